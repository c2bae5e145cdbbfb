package activity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
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
// clock reading, durations rounded to microseconds.
func normalize(r *Record) {
	r.Time = r.Time.UTC().Round(0)
	r.DurationMS = float64(int64(r.DurationMS*1000+0.5)) / 1000
}
