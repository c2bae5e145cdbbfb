// Package activity is the audit trail of a sidecar: the Record of a session start, a statement or a
// session end; the Spool that keeps records on the sidecar's disk, hash-chained, until the control
// plane has them; the Shipper that delivers them in order; and Verify, which checks a chain. It sits in
// the core layer and imports only the standard library and the root package.
//
//	engine ──Append (before forwarding)──▶ Spool (segment files, fsync) ──ReadLines──▶ Shipper ──Sink.Ship──▶ control plane
//	       ──Defer (statement.end)──────▶
//	                                          ▲                                      │
//	                                          └──────────── Ack (persisted) ◀────────┘ on success only
//
// # Delivery guarantee
//
// At least once, in order, per spool. Append returns only after the record is written to the
// segment file, so a statement is never forwarded without its record; whether it has also been
// fsynced (and so survives a crash of the machine) is the SyncPolicy: SyncInterval (the default)
// fsyncs in the background every Config.SyncEvery, SyncAlways before Append returns. Only fsynced
// records are read for shipping (Read and ReadLines sync first), so the receiver never holds a
// record that a machine crash could take back and the chain then reuse. Each Append is one
// write(2); its record is encoded once, by a hand-written encoder that produces exactly
// encoding/json's bytes, and hashed from those bytes. The Shipper advances the
// acknowledged position only after Sink.Ship succeeds, and retries with backoff otherwise; a crash
// between a successful Ship and the Ack sends that batch again after restart, so the receiver
// stores records under the unique key (instance_id, seq) and ignores duplicates.
//
// # Outcomes
//
// A statement's record is appended before the statement runs, so its outcome (rows, duration,
// error) comes later, through Defer. The spool keeps the latest deferred outcome of each session
// and attaches it to the session's next statement or session.end record (Record.End): a busy
// session writes, ships and stores one record per statement. An outcome that no record carried
// within one to two SyncEvery ticks, an earlier outcome of the same session still waiting (a
// pipelined statement's), and every waiting outcome at Close are written as statement.end records
// of their own. Record.EndRecord gives either form as a statement.end record.
//
// # Hash chain
//
// Records are chained per sidecar instance: Hash is the hex SHA-256 of PrevHash followed by the
// record's canonical JSON (encoding/json of the Record with Hash empty, fields in declaration order,
// times in UTC), and PrevHash is the Hash of the instance's previous record. Seq counts from 1 per
// instance. The receiver must keep records byte-for-byte as received (or re-encode them losslessly
// with this package) for Verify to succeed. A spool directory belongs to one instance at a time:
// the sidecar keeps its instance ID stable per data directory; if it changes, the next record starts
// a new chain at Seq 1 for the new instance.
//
// # Bounded size
//
// The spool holds at most Config.MaxBytes. When full, FailClosed (the default) makes Append return
// ErrSpoolFull, and the engine refuses the statement; DropOldest deletes the oldest unshipped
// segments (down to three quarters of MaxBytes, so drops come in batches) and appends a
// "spool.dropped" record whose Gaps name, per chain, the dropped seq ranges and the hashes on both
// sides of each, so Verify reports them as admitted rather than as tampering. Every spool.dropped
// record repeats the gaps of the previous one until that one is acknowledged, so losing a
// spool.dropped record to a later drop loses nothing and the list stays short.
//
// # Files
//
// Dir holds segment files seg-NNNNNNNNNNNNNNNNNNNN.jsonl (JSON Lines, the canonical encoding, one
// record per line) and acked.json, the acknowledged Position, replaced atomically. A line cut short
// by a crash is truncated at Open (its Append never returned, so its statement never ran); a
// damaged complete line is skipped by Read and shows up in Verify as a gap. The shipper reads the
// files (from the page cache, a batch at a time, into a buffer it reuses) and checks only lines
// written before the spool was opened: the lines this process wrote since are its own, known by
// their position.
//
// # What records hold
//
// Statements and identities, never secrets: no tokens, passwords or credentials are fields of
// Record. Bind parameter values go in Params only when the repository opts in to recording them;
// the engine decides and leaves Params empty otherwise.
package activity
