package activity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Record types.
const (
	TypeSessionStart = "session.start"
	TypeStatement    = "statement"
	TypeSessionEnd   = "session.end"
	// TypeStatementEnd completes a statement record (Ref is its Seq) with what is known only after
	// the statement ran: Rows, DurationMS, ErrorCode. The statement record itself is appended
	// before the statement is forwarded, so it cannot carry them; the control plane joins the two.
	// Most outcomes are not records of their own: the session's next record carries them (End).
	TypeStatementEnd = "statement.end"
	// TypeDropped is written by the spool when DropOldest discards records; Gaps say what was lost.
	TypeDropped = "spool.dropped"
)

// Outcomes of a session start.
const (
	OutcomeSuccess = "success"
	OutcomeRefused = "refused"
	OutcomeError   = "error"
)

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Record is one activity event. Field order is part of the canonical form the hash covers: add new
// fields at the end, with omitempty, so that older records still verify.
type Record struct {
	Seq        uint64    `json:"seq"`
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	SidecarID  string    `json:"sidecar_id,omitempty"`
	InstanceID string    `json:"instance_id,omitempty"`
	SessionID  string    `json:"session_id,omitempty"`
	Ref        uint64    `json:"ref,omitempty"` // statement.end: Seq of the statement record it completes

	// Identity: the IdP user and their groups, the repository and the repository user.
	User           string   `json:"user,omitempty"`
	Groups         []string `json:"groups,omitempty"`
	Repository     string   `json:"repository,omitempty"`
	RepositoryUser string   `json:"repository_user,omitempty"`
	ClientAddr     string   `json:"client_addr,omitempty"`
	Application    string   `json:"application,omitempty"`
	TLS            bool     `json:"tls,omitempty"`

	// Session start: success, refused or error, and why.
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`

	// Statement.
	Statement   string   `json:"statement,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Kind        string   `json:"kind,omitempty"`
	Objects     []string `json:"objects,omitempty"` // "schema.table" or "schema.table.column"
	// Params holds bind parameter values only when the repository opts in to recording them.
	Params   []string `json:"params,omitempty"`
	Decision string   `json:"decision,omitempty"` // allow or deny
	Rule     string   `json:"rule,omitempty"`
	Mode     string   `json:"mode,omitempty"` // enforce or monitor

	// Outcome of a statement, or totals of a session at its end.
	Rows       int64   `json:"rows,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	ErrorCode  string  `json:"error_code,omitempty"` // SQLSTATE, MySQL error number, ...
	BytesIn    int64   `json:"bytes_in,omitempty"`
	BytesOut   int64   `json:"bytes_out,omitempty"`

	Gaps []Gap `json:"gaps,omitempty"` // TypeDropped only

	// End is the outcome of an earlier statement of the same session, carried by a statement or
	// session.end record in place of a statement.end record of its own (see End).
	End End `json:"end,omitzero"`

	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// End is a statement's outcome carried by a later record of its session: what a statement.end
// record would hold. The spool attaches the latest deferred outcome of a session to the session's
// next statement or session.end record (Spool.Defer), so that a busy session writes one record per
// statement; an outcome with no record to carry it within the sync interval is written as a
// statement.end record after all.
type End struct {
	Ref        uint64  `json:"ref"` // Seq of the statement record it completes
	Rows       int64   `json:"rows,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	ErrorCode  string  `json:"error_code,omitempty"`
	Reason     string  `json:"reason,omitempty"`
}

// Completes returns the Seq of the statement whose outcome r holds, as a statement.end record
// (Ref) or by carrying it (End.Ref), or 0.
func (r *Record) Completes() uint64 {
	if r.Type == TypeStatementEnd {
		return r.Ref
	}
	return r.End.Ref
}

// EndRecord returns the statement.end record r is, or the one it stands for by carrying End (with
// the carrier's time, identity and chain position), and whether it is either.
func (r *Record) EndRecord() (Record, bool) {
	switch {
	case r.Type == TypeStatementEnd:
		return *r, true
	case r.End.Ref != 0:
		e := r.End
		return Record{Seq: r.Seq, Type: TypeStatementEnd, Time: r.Time, SidecarID: r.SidecarID, InstanceID: r.InstanceID,
			SessionID: r.SessionID, Ref: e.Ref, User: r.User, Repository: r.Repository, RepositoryUser: r.RepositoryUser,
			Reason: e.Reason, Rows: e.Rows, DurationMS: e.DurationMS, ErrorCode: e.ErrorCode}, true
	}
	return Record{}, false
}

// Gap is a range of one chain that the spool discarded (DropOldest). PrevHash is the Hash of the
// record before the range, LastHash the Hash of the last record in it: the record after the range
// has LastHash as its PrevHash.
type Gap struct {
	InstanceID string `json:"instance_id"`
	From       uint64 `json:"from"`
	To         uint64 `json:"to"`
	PrevHash   string `json:"prev_hash,omitempty"`
	LastHash   string `json:"last_hash"`
}

// ComputeHash returns the hash r should carry given its PrevHash: hex SHA-256 of PrevHash and the
// canonical JSON of r without Hash.
func ComputeHash(r *Record) (string, error) {
	c := *r
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode record %d: %w", r.Seq, err)
	}
	h := sha256.New()
	h.Write([]byte(r.PrevHash))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// normalize puts a record in the form its hash is computed over: UTC times without a monotonic
// clock reading, durations rounded to microseconds (and 0 where not finite: JSON has no NaN).
func normalize(r *Record) {
	r.Time = r.Time.UTC().Round(0)
	r.DurationMS = roundMS(r.DurationMS)
	r.End.DurationMS = roundMS(r.End.DurationMS)
}

func roundMS(ms float64) float64 {
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return 0
	}
	return float64(int64(ms*1000+0.5)) / 1000
}
