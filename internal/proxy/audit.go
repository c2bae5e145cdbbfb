package proxy

import (
	"context"
	"time"
)

// Auditor governs and records what happens in sessions: every login attempt and every statement.
// The sidecar implements it once for all engines (classify, evaluate access policy, append to the
// activity spool); an engine only extracts statements from its protocol, asks before forwarding
// each one, and answers a refusal with its protocol's own error.
//
// Engines call Login once per login attempt that got as far as presenting a token, successful or
// not. For a refused or failed login the returned StatementAuditor is nil.
type Auditor interface {
	Login(ctx context.Context, l LoginEvent) (StatementAuditor, error)
}

// LoginEvent is a login attempt as activity records it.
type LoginEvent struct {
	Login       Login
	Grant       *Grant // nil when refused
	Application string // the client's application_name or equivalent
	TLS         bool
	// Err is why the login was refused (*AuthError) or failed (anything else); nil on success.
	Err error
}

// Protocol paths a statement can arrive by; they decide how text is split and resolved.
const (
	PathSimple   = "simple"   // a simple query: the text may hold several statements
	PathExtended = "extended" // an execution of an extended-protocol prepared statement
	PathFunction = "function" // a protocol-level function call (PostgreSQL FunctionCall)
)

// Statement is one statement message as an engine extracted it.
type Statement struct {
	Path string
	SQL  string
	// Name is the prepared statement's name on the extended path ("" for the unnamed one).
	Name string
	// Params are bind parameter values as text, only when StatementAuditor.RecordParams said so.
	Params []string
}

// Refusal says why a statement was refused; engines map it to their protocol's error code
// (PostgreSQL: RefusedByPolicy → 42501, NotRecorded → 53000).
type Refusal int

// Reasons a statement is refused.
const (
	Allowed         Refusal = iota
	RefusedByPolicy         // an access rule, or the absence of one, denies it
	NotRecorded             // the statement could not be recorded (spool full, classification failed): fail closed
)

// Verdict is the answer for one statement message.
type Verdict struct {
	Refusal Refusal
	Message string // for the client when refused: names the rule
	// Refs identify the records appended for the statements of the message, in order; the engine
	// completes each with Complete once the server has answered (or knows it never ran).
	Refs []uint64
	// RefreshSchema asks the engine to find out the session's default schema again after the
	// message ran, and to pass it to SetSchema.
	RefreshSchema bool
}

// Completion is what the server said about one statement.
type Completion struct {
	Rows      int64
	Duration  time.Duration
	ErrorCode string // SQLSTATE or the protocol's equivalent; empty on success
	// NotExecuted marks a statement the server never ran (an earlier one in the same message or
	// batch failed, or the session ended first).
	NotExecuted bool
}

// SessionEnd is a session's totals.
type SessionEnd struct {
	Duration          time.Duration
	BytesFromClient   int64
	BytesToClient     int64
	Reason, ErrorCode string
}

// StatementAuditor governs one session. Statement and Complete are called from the session's
// two relay directions concurrently; Close is called once after both have stopped.
type StatementAuditor interface {
	// Statement classifies, evaluates and records a statement message. It returns only after the
	// records are durable; the engine forwards the message only if the Verdict allows it. st is
	// the engine's, reused for the session's next statement: it must not be kept after the call
	// (its strings and Params may be).
	Statement(ctx context.Context, st *Statement) Verdict
	// Complete records the outcome of the statement with reference ref.
	Complete(ref uint64, c Completion)
	// SetSchema sets the schema unqualified names resolve to ("" when it cannot be known).
	SetSchema(schema string)
	// RecordParams reports whether bind parameter values may be recorded for this session's
	// repository.
	RecordParams() bool
	// Close records the end of the session.
	Close(ctx context.Context, end SessionEnd)
}
