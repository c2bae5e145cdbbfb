// Package sidecar wires and runs one sidecar instance: the sync loop that long-polls the control
// plane for its configuration snapshot, the report loop that sends heartbeats, and the listener
// manager that opens and closes listener ports and hands accepted connections to the engine for
// the port's database type. It is also the engines' proxy.Authorizer, deciding logins from the
// last snapshot it received.
//
//	Run ─┬─ sync loop ── GET /sidecar/config?since=N ──▶ apply(snapshot)
//	     │                                                 ├─ state: atomic.Pointer, swapped whole
//	     │                                                 ├─ listeners: open new ports, close removed
//	     │                                                 └─ grants: close Revoked of sessions the
//	     │                                                    new snapshot no longer allows
//	     ├─ report loop ── POST /sidecar/report every ReportInterval and after each apply
//	     └─ listener manager ── accept ──▶ Engines[type](...).Serve(ctx, conn)
//
// Offline behaviour (DESIGN.md): when the control plane is unreachable the last snapshot stays in
// force, so existing tokens keep working until they expire; a token the snapshot does not know is
// refused with proxy.ControlPlaneDown; the sync loop retries with capped exponential backoff and
// jitter and never gives up. The snapshot and every credential live only in memory; the data
// directory holds only the activity spool (statements and identities, never secrets) and the
// instance ID.
package sidecar
