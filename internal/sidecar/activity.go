package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	sqlmy "github.com/gatehousedb/gatehouse/internal/sqlparse/mysql"
	sqlpg "github.com/gatehousedb/gatehouse/internal/sqlparse/postgres"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// DefaultDataDir is where a sidecar keeps its activity spool and instance identity when no data
// directory is configured.
const DefaultDataDir = "./gatehouse-sidecar-data"

// instanceFile holds the instance ID of the sidecar instance that owns a data directory, so that
// its activity hash chain continues across restarts.
const instanceFile = "instance_id"

// auditor is the protocol-neutral statement governance of a sidecar instance: it classifies each
// statement (through the engine's dialect), evaluates the access policies of the session's
// repository, and appends activity records to the spool before the engine forwards anything. It
// implements proxy.Auditor for every engine.
type auditor struct {
	spool  *activity.Spool
	lock   *os.File // flock on the data directory
	pg     *policy.Cache
	my     *policy.Cache
	sets   atomic.Pointer[policySets]
	logger *slog.Logger
	now    func() time.Time
}

var _ proxy.Auditor = (*auditor)(nil)

// policySets are the compiled access policies of one snapshot.
type policySets struct {
	byRepo           map[string]*policy.Set
	broken           map[string]string // repository -> why its policies do not compile
	allowUnsupported bool
}

var emptySet, _ = policy.Compile(nil)

// openAuditor takes the data directory (one instance at a time), reads or makes the instance ID
// and opens the spool.
func openAuditor(cfg Config, logger *slog.Logger) (*auditor, string, error) {
	dir := cfg.DataDir
	if dir == "" {
		dir = DefaultDataDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("open data directory lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, "", fmt.Errorf("data directory %s is in use by another sidecar instance; give each instance its own --data-dir", dir)
	}
	id, err := instanceID(dir)
	if err != nil {
		lock.Close()
		return nil, "", err
	}
	full := activity.FailClosed
	if cfg.ActivityDropOldest {
		full = activity.DropOldest
	}
	sync := activity.SyncInterval
	if cfg.ActivitySyncAlways {
		sync = activity.SyncAlways
	}
	spool, err := activity.Open(activity.Config{
		Dir:        filepath.Join(dir, "activity"),
		SidecarID:  cfg.SidecarID,
		InstanceID: id,
		MaxBytes:   cfg.ActivitySpoolMaxBytes,
		Full:       full,
		Sync:       sync,
		SyncEvery:  cfg.ActivitySyncInterval,
		Logger:     logger.With("component", "activity/spool"),
	})
	if err != nil {
		lock.Close()
		return nil, "", err
	}
	a := &auditor{spool: spool, lock: lock, pg: sqlpg.NewCache(), my: sqlmy.NewCache(), logger: logger, now: time.Now}
	a.sets.Store(&policySets{byRepo: map[string]*policy.Set{}})
	return a, id, nil
}

func instanceID(dir string) (string, error) {
	path := filepath.Join(dir, instanceFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read instance ID: %w", err)
	}
	id := rand.Text()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write instance ID: %w", err)
	}
	return id, nil
}

func (a *auditor) close() error {
	err := a.spool.Close()
	a.lock.Close()
	return err
}

// update compiles the access policies of a new snapshot and swaps them in.
func (a *auditor) update(snap *syncapi.Snapshot) {
	group := map[string][]gatehouse.AccessPolicy{}
	for _, p := range snap.AccessPolicies {
		group[p.Repository] = append(group[p.Repository], p)
	}
	ps := &policySets{byRepo: map[string]*policy.Set{}, broken: map[string]string{}, allowUnsupported: snap.Sidecar.AllowUnsupportedQueries}
	for repo, list := range group {
		set, err := policy.Compile(list)
		if err != nil {
			a.logger.Error("access policies do not compile; every statement on the repository is refused", "repository", repo, "err", err)
			ps.broken[repo] = err.Error()
			continue
		}
		ps.byRepo[repo] = set
	}
	a.sets.Store(ps)
}

// Login records a login attempt and, for a successful one, returns the session's governance.
func (a *auditor) Login(ctx context.Context, ev proxy.LoginEvent) (proxy.StatementAuditor, error) {
	r := &activity.Record{
		Type:        activity.TypeSessionStart,
		SessionID:   rand.Text(),
		ClientAddr:  ev.Login.ClientAddr,
		Application: ev.Application,
		TLS:         ev.TLS,
		Outcome:     activity.OutcomeSuccess,
	}
	if g := ev.Grant; g != nil {
		r.User, r.Groups = g.Identity.User, g.Identity.Groups
		r.Repository, r.RepositoryUser = g.Target.Repository.Name, g.Target.User.Username
	} else {
		r.RepositoryUser, r.Repository, _ = strings.Cut(ev.Login.Username, "@")
	}
	if ev.Err != nil {
		var ae *proxy.AuthError
		r.Outcome = activity.OutcomeError
		if errors.As(ev.Err, &ae) {
			r.Outcome = activity.OutcomeRefused
			r.User = ae.User
		}
		r.Reason = ev.Err.Error()
	}
	if err := a.spool.Append(ctx, r); err != nil {
		return nil, err
	}
	if ev.Err != nil {
		return nil, nil
	}
	s := &session{
		a:            a,
		id:           r.SessionID,
		subject:      policy.Subject{User: r.User, Groups: r.Groups},
		repo:         r.Repository,
		user:         r.RepositoryUser,
		recordParams: ev.Grant.Target.Repository.RecordParameters,
		classifier:   a.pg,
	}
	if ev.Grant.Target.Repository.Type == gatehouse.MySQL {
		s.classifier = a.my
	}
	return s, nil
}

// session governs one client session. Statement, SetSchema and RecordParams are called from the
// engine's client→upstream direction only; Complete from the other direction.
type session struct {
	a       *auditor
	id      string
	subject policy.Subject
	repo    string
	user    string
	schema  string
	// recordParams is the repository's record_parameters as of the login: a change applies to
	// sessions that start after the sidecar has synced it.
	recordParams bool
	prep         policy.Prepared
	classifier   *policy.Cache // the repository's dialect's
	endOnce      sync.Once

	// qualified remembers, per classified statement, its objects qualified with schema and their
	// names for its record, so that a statement the session runs again costs no allocation. The
	// key is the statement's first object: classifications are cached and never modified (see
	// policy.Cache), and the key keeps its array alive, so an address is never reused for another.
	qualified map[*policy.Object]qualifiedObjects
	// refs is handed out to Verdicts a piece at a time, each piece once: the engine may keep one
	// until the statement completes. Each new array is twice the last, up to maxRefsChunk: a
	// session that runs a statement or two and then idles (a pool's connection) keeps a few bytes,
	// a busy one allocates once per 64 statements.
	refs      []uint64
	refsChunk int
}

// maxRefsChunk bounds the arrays a session's refs are cut from.
const maxRefsChunk = 64

type qualifiedObjects struct {
	n       int // len(Objects) of the statement
	schema  string
	objects []policy.Object
	names   []string
}

// maxQualified bounds a session's qualified cache; when full it starts again.
const maxQualified = 64

var _ proxy.StatementAuditor = (*session)(nil)

func (s *session) SetSchema(schema string) { s.schema = schema }

// RecordParams reports whether the session's repository opted in to recording bind parameter
// values.
func (s *session) RecordParams() bool { return s.recordParams }

func (s *session) decide(st policy.Statement) policy.Decision {
	sets := s.a.sets.Load()
	if why, ok := sets.broken[s.repo]; ok {
		return policy.Decision{Enforced: true, Mode: gatehouse.AccessEnforce, Reason: "the repository's access policies cannot be evaluated: " + why}
	}
	set := sets.byRepo[s.repo]
	if set == nil {
		set = emptySet
	}
	return set.Evaluate(s.subject, st, sets.allowUnsupported)
}

// Statement classifies, evaluates and records a statement message.
func (s *session) Statement(ctx context.Context, m *proxy.Statement) proxy.Verdict {
	var sts []policy.Statement
	var fn [1]policy.Statement
	if m.Path == proxy.PathFunction {
		fn[0] = policy.Statement{Kind: policy.KindFunction, Text: m.SQL}
		sts = fn[:]
	} else {
		var err error
		// A statement found by its shape is built in one, which stays on the stack: the call
		// is not through an interface or a func value.
		var one [1]policy.Statement
		sts, err = s.classifier.ClassifyInto(one[:], m.SQL)
		if err != nil {
			var r activity.Record
			s.record(&r, s.a.now(), policy.Statement{Kind: policy.KindUnsupported, Text: m.SQL, Unsupported: true}, nil, policy.Decision{Mode: gatehouse.AccessEnforce, Reason: "statement could not be classified: " + err.Error()})
			_ = s.a.spool.Append(ctx, &r)
			return proxy.Verdict{Refusal: proxy.NotRecorded, Message: "Gatehouse could not classify this statement; it was not run"}
		}
	}
	if len(sts) == 0 {
		return proxy.Verdict{} // empty query: nothing runs
	}
	// Most messages hold one statement: its record stays on the stack (the spool keeps no
	// reference to what it is given).
	var one [1]activity.Record
	recs := one[:]
	if len(sts) > 1 {
		recs = make([]activity.Record, len(sts))
	}
	now := s.a.now()
	var blocked *policy.Decision
	var refusal policy.Decision
	refresh := false
	for i, st := range sts {
		st = s.prep.Resolve(st)
		st, names := s.qualify(st)
		d := s.decide(st)
		if d.Blocks() && blocked == nil {
			refusal = d
			blocked = &refusal
		}
		refresh = refresh || st.ChangesDefaultSchema
		r := &recs[i]
		s.record(r, now, st, names, d)
		if m.Path == proxy.PathExtended && len(m.Params) > 0 {
			r.Params = m.Params
		}
	}
	if blocked != nil {
		for i := range recs {
			if r := &recs[i]; r.Decision == activity.DecisionAllow {
				r.Reason = "not run: another statement of the same message was refused"
			}
		}
	}
	if err := s.a.spool.AppendAll(ctx, recs); err != nil {
		s.a.logger.Error("statement not recorded; refused", "session_id", s.id, "err", err)
		if errors.Is(err, activity.ErrSpoolFull) {
			return proxy.Verdict{Refusal: proxy.NotRecorded, Message: "Gatehouse cannot record this statement, so it was not run: " +
				"the sidecar's activity spool is full because the control plane has not taken its records (is it reachable?); " +
				"statements run again once it has"}
		}
		return proxy.Verdict{Refusal: proxy.NotRecorded, Message: fmt.Sprintf("Gatehouse cannot record this statement (%v), so it was not run", err)}
	}
	if blocked != nil {
		msg := "permission denied by Gatehouse"
		if blocked.Rule != "" {
			msg += " access rule " + blocked.Rule
		}
		if blocked.Reason != "" {
			msg += ": " + blocked.Reason
		}
		return proxy.Verdict{Refusal: proxy.RefusedByPolicy, Message: msg}
	}
	refs := s.newRefs(len(recs))
	for i := range recs {
		refs[i] = recs[i].Seq
	}
	return proxy.Verdict{Refs: refs, RefreshSchema: refresh}
}

// qualify returns st with its objects qualified with the session's schema (policy.Qualify), and
// the objects' names as its record lists them (Statement.ObjectNames), from the session's cache
// when it can.
func (s *session) qualify(st policy.Statement) (policy.Statement, []string) {
	if len(st.Objects) == 0 {
		return st, nil
	}
	key := &st.Objects[0]
	if q, ok := s.qualified[key]; ok && q.n == len(st.Objects) && q.schema == s.schema {
		st.Objects = q.objects
		return st, q.names
	}
	n := len(st.Objects)
	st = policy.Qualify(st, s.schema)
	names := st.ObjectNames()
	if s.qualified == nil || len(s.qualified) >= maxQualified {
		s.qualified = make(map[*policy.Object]qualifiedObjects)
	}
	s.qualified[key] = qualifiedObjects{n: n, schema: s.schema, objects: st.Objects, names: names}
	return st, names
}

// newRefs returns a slice of n refs that no one else has.
func (s *session) newRefs(n int) []uint64 {
	if len(s.refs) < n {
		s.refsChunk = min(max(2*s.refsChunk, 4), maxRefsChunk)
		s.refs = make([]uint64, max(n, s.refsChunk))
	}
	refs := s.refs[:n:n]
	s.refs = s.refs[n:]
	return refs
}

// record fills r, the record of statement st (whose objects are named names) and its decision.
func (s *session) record(r *activity.Record, now time.Time, st policy.Statement, names []string, d policy.Decision) {
	*r = activity.Record{
		Type:           activity.TypeStatement,
		Time:           now,
		SessionID:      s.id,
		User:           s.subject.User,
		Repository:     s.repo,
		RepositoryUser: s.user,
		Statement:      st.Text,
		Fingerprint:    st.Fingerprint,
		Kind:           st.Kind,
		Objects:        names,
		Decision:       activity.DecisionAllow,
		Rule:           d.Rule,
		Mode:           d.Mode,
		Reason:         d.Reason,
	}
	if !d.Allowed {
		r.Decision = activity.DecisionDeny
	}
}

// Complete defers the statement.end record of ref to the spool (activity.Spool.Defer), so that the
// server's answers reach the client without waiting for the disk: the session's next statement
// record or its session.end carries it (one record per statement), or the spool's background
// syncer writes it within two sync intervals.
func (s *session) Complete(ref uint64, c proxy.Completion) {
	r := activity.Record{
		Type:           activity.TypeStatementEnd,
		Time:           s.a.now(),
		SessionID:      s.id,
		Ref:            ref,
		User:           s.subject.User,
		Repository:     s.repo,
		RepositoryUser: s.user,
		Rows:           c.Rows,
		DurationMS:     float64(c.Duration) / float64(time.Millisecond),
		ErrorCode:      c.ErrorCode,
	}
	if c.NotExecuted {
		r.Reason = "not executed"
	}
	s.a.spool.Defer(&r) // a copy: r stays on the stack
}

// Close records the session's end, which carries the outcome of its last statement (the spool
// writes any other deferred outcome first).
func (s *session) Close(ctx context.Context, end proxy.SessionEnd) {
	s.endOnce.Do(func() {
		r := &activity.Record{
			Type:           activity.TypeSessionEnd,
			SessionID:      s.id,
			User:           s.subject.User,
			Repository:     s.repo,
			RepositoryUser: s.user,
			DurationMS:     float64(end.Duration) / float64(time.Millisecond),
			BytesIn:        end.BytesFromClient,
			BytesOut:       end.BytesToClient,
			Reason:         end.Reason,
		}
		if err := s.a.spool.Append(ctx, r); err != nil {
			s.a.logger.Error("session end not recorded", "session_id", s.id, "err", err)
		}
	})
}

// activitySink ships spool records to the control plane, as they are in the spool.
type activitySink struct{ c *syncapi.Client }

func (k activitySink) Ship(ctx context.Context, records []json.RawMessage) error {
	return k.c.ShipActivity(ctx, records)
}
