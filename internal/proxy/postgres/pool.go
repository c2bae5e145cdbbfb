package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// Upstream session pooling. A client session that ends cleanly leaves its authenticated upstream
// connection behind, reset, for the next session of the same key; the next one skips the dial, the
// TLS handshake, the credential fetch and the backend start.
//
// The key is (repository, repository user, database, the client's other startup parameters) plus
// fingerprints of the repository's and the repository user's settings. Startup parameters are in
// it because PostgreSQL makes them the session's reset values: after DISCARD ALL a connection
// started with client_encoding=LATIN1 or options=-c statement_timeout=5s still has them, so it may
// only serve clients that asked for the same. application_name is not in it: pooled connections
// start with a neutral one and each session SETs its own (the person's name) when it takes one.
//
// Life of a pooled connection:
//
//	get ── idle one for the key? ── yes ─▶ activate: SET application_name = '<app> (gatehouse:<person>)'
//	  │                                       (fails: close it, try the next) ─────────────────────────┐
//	  └─ no: wait for one of the repository's dial slots (or for a connection coming back), dial,     │
//	         authenticate, activate                                                                   │
//	session relays through poolConn, which withholds the client's Terminate ◀─────────────────────────┘
//	release, only when the client sent Terminate right after Query/Sync/FunctionCall (or nothing):
//	  DISCARD ALL; SELECT '<nonce>' ── answers exactly as expected, ReadyForQuery 'I' both times?
//	    yes ─▶ idle (up to Idle per key, for IdleTimeout, within MaxLifetime)   no ─▶ close
//
// The nonce makes sure the answers read are ours: anything the client left outstanding (a query it
// did not wait for, an open transaction, a COPY) answers first and fails the check, and the
// connection is closed, which rolls back whatever it had open. A connection is never shared by two
// live sessions: it is in the idle stack or owned by exactly one session.

// Defaults for PoolConfig's zero values.
const (
	DefaultPoolIdleTimeout        = 5 * time.Minute
	DefaultPoolMaxLifetime        = time.Hour
	DefaultPoolDialsPerRepository = 16
)

const (
	// pooledApplicationName is what a pooled connection starts with and returns to on RESET ALL
	// or DISCARD ALL; each session SETs the person's.
	pooledApplicationName = "gatehouse (pooled)"
	// poolExchangeTimeout bounds the reset and activation exchanges with an idle connection.
	poolExchangeTimeout = 5 * time.Second
)

// PoolConfig configures upstream session pooling. The zero value disables it.
type PoolConfig struct {
	// Idle is the most idle upstream connections kept per key; zero disables pooling.
	Idle int
	// IdleTimeout closes a connection idle this long; zero means DefaultPoolIdleTimeout.
	IdleTimeout time.Duration
	// MaxLifetime stops reusing a connection this old; zero means DefaultPoolMaxLifetime.
	MaxLifetime time.Duration
	// DialsPerRepository caps the upstream connections being opened (connect, TLS,
	// authentication) at once per repository; sessions beyond it wait for a slot or for a pooled
	// connection to come back. Zero means DefaultPoolDialsPerRepository.
	DialsPerRepository int
}

// poolKey says which sessions a connection may serve.
type poolKey struct {
	repository string
	user       string
	database   string
	params     string // the other startup parameters, sorted: "k=v\x00..."
	repoConfig uint64 // fingerprint of the repository's settings
	userConfig uint64 // fingerprint of the repository user's settings
}

func (k poolKey) repoUser() string { return k.repository + "\x00" + k.user }

// idleConn is a pooled upstream connection and what a session needs to take it over.
type idleConn struct {
	key       poolKey
	gen       uint64 // the repository user's pool generation when it was dialed
	conn      net.Conn
	r         *connReader
	w         *connWriter
	tls       bool
	database  string
	backend   pgproto3.BackendKeyData     // the upstream's real key, for cancels
	params    []*pgproto3.ParameterStatus // from shared
	shared    *paramTable
	born      time.Time
	idleSince time.Time
	timer     *time.Timer // idle timeout; nil while in use
}

func (ic *idleConn) close() { ic.conn.Close() }

// pool holds one Engine's idle upstream connections.
type pool struct {
	cfg  PoolConfig
	seed maphash.Seed

	mu       sync.Mutex
	closed   bool
	idle     map[poolKey][]*idleConn // most recently used last
	waiters  map[poolKey]chan struct{}
	dials    map[string]chan struct{} // repository -> dial slots
	repoConf map[string]uint64        // repository -> fingerprint last seen
	userConf map[string]uint64        // repository/user -> fingerprint last seen
	gen      map[string]uint64        // repository/user -> generation, bumped by drop
}

func newPool(cfg PoolConfig) *pool {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultPoolIdleTimeout
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultPoolMaxLifetime
	}
	if cfg.DialsPerRepository <= 0 {
		cfg.DialsPerRepository = DefaultPoolDialsPerRepository
	}
	return &pool{
		cfg: cfg, seed: maphash.MakeSeed(),
		idle: map[poolKey][]*idleConn{}, waiters: map[poolKey]chan struct{}{}, dials: map[string]chan struct{}{},
		repoConf: map[string]uint64{}, userConf: map[string]uint64{}, gen: map[string]uint64{},
	}
}

// key is the pool key of a session connecting with params (from upstreamParams) to t.
func (p *pool) key(t proxy.Target, params map[string]string) poolKey {
	names := make([]string, 0, len(params))
	for k := range params {
		switch k {
		case "user", "database", "application_name":
			continue
		}
		names = append(names, k)
	}
	slices.Sort(names)
	var sb strings.Builder
	for _, n := range names {
		sb.WriteString(n)
		sb.WriteByte('=')
		sb.WriteString(params[n])
		sb.WriteByte(0)
	}
	var h maphash.Hash
	h.SetSeed(p.seed)
	r := t.Repository
	for _, s := range []string{r.Name, string(r.Type), r.Version, r.Hostname, strconv.Itoa(r.Port), r.Database,
		string(r.TLSMode), r.CABundle, r.UpdatedAt.UTC().String()} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	repoConfig := h.Sum64()
	h.Reset()
	u := t.User
	for _, s := range []string{u.Username, u.Secret.String(), u.UpdatedAt.UTC().String()} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	return poolKey{repository: r.Name, user: params["user"], database: params["database"], params: sb.String(),
		repoConfig: repoConfig, userConfig: h.Sum64()}
}

// get returns an idle connection for k, or nil and a dial slot to release (done) once the new
// connection is open. While the repository's slots are all taken it waits, and takes a connection
// for k that comes back meanwhile.
func (p *pool) get(ctx context.Context, k poolKey) (ic *idleConn, done func(), gen uint64, err error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, func() {}, 0, nil
		}
		stale := p.observe(k)
		ic := p.pop(k, &stale)
		gen := p.gen[k.repoUser()]
		var slots, wake chan struct{}
		if ic == nil {
			if slots = p.dials[k.repository]; slots == nil {
				slots = make(chan struct{}, p.cfg.DialsPerRepository)
				p.dials[k.repository] = slots
			}
			if wake = p.waiters[k]; wake == nil {
				wake = make(chan struct{})
				p.waiters[k] = wake
			}
		}
		p.mu.Unlock()
		closeAll(stale)
		if ic != nil {
			return ic, nil, 0, nil
		}
		select {
		case slots <- struct{}{}:
			return nil, func() { <-slots }, gen, nil
		case <-wake:
		case <-ctx.Done():
			return nil, nil, 0, ctx.Err()
		}
	}
}

// observe records k's settings fingerprints and returns the idle connections made under other
// settings of the same repository or repository user, taken out of the pool. Called with p.mu held.
func (p *pool) observe(k poolKey) []*idleConn {
	ru := k.repoUser()
	repoChanged := p.repoConf[k.repository] != k.repoConfig
	userChanged := p.userConf[ru] != k.userConfig
	if !repoChanged && !userChanged {
		return nil
	}
	p.repoConf[k.repository] = k.repoConfig
	p.userConf[ru] = k.userConfig
	return p.removeLocked(func(o poolKey) bool {
		return o.repository == k.repository && (o.repoConfig != k.repoConfig || o.user == k.user && o.userConfig != k.userConfig)
	})
}

// pop takes the most recently used idle connection for k that is young enough; older ones go to
// stale. Called with p.mu held.
func (p *pool) pop(k poolKey, stale *[]*idleConn) *idleConn {
	s := p.idle[k]
	defer func() {
		if len(s) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = s
		}
	}()
	for len(s) > 0 {
		ic := s[len(s)-1]
		s[len(s)-1] = nil
		s = s[:len(s)-1]
		ic.timer.Stop()
		ic.timer = nil
		if time.Since(ic.born) < p.cfg.MaxLifetime {
			return ic
		}
		*stale = append(*stale, ic)
	}
	return nil
}

// put makes ic idle, or closes it when the pool no longer wants it: its settings or credential
// were superseded, its key already has Idle connections, it is too old, or the pool is closed.
// It reports whether ic was kept.
func (p *pool) put(ic *idleConn) bool {
	k := ic.key
	p.mu.Lock()
	ok := !p.closed && p.repoConf[k.repository] == k.repoConfig && p.userConf[k.repoUser()] == k.userConfig &&
		p.gen[k.repoUser()] == ic.gen && len(p.idle[k]) < p.cfg.Idle && time.Since(ic.born) < p.cfg.MaxLifetime
	if ok {
		ic.idleSince = time.Now()
		ic.timer = time.AfterFunc(p.cfg.IdleTimeout, func() { p.expire(ic) })
		p.idle[k] = append(p.idle[k], ic)
		if w := p.waiters[k]; w != nil {
			close(w)
			delete(p.waiters, k)
		}
	}
	p.mu.Unlock()
	if !ok {
		ic.close()
	}
	return ok
}

// expire closes ic if it has been idle for IdleTimeout (the timer of an earlier idle spell may
// fire after ic was taken and put back).
func (p *pool) expire(ic *idleConn) {
	p.mu.Lock()
	s := p.idle[ic.key]
	i := slices.Index(s, ic)
	if i >= 0 && time.Since(ic.idleSince) < p.cfg.IdleTimeout {
		i = -1
	}
	if i >= 0 {
		s = slices.Delete(s, i, i+1)
		if len(s) == 0 {
			delete(p.idle, ic.key)
		} else {
			p.idle[ic.key] = s
		}
	}
	p.mu.Unlock()
	if i >= 0 {
		ic.close()
	}
}

// drop closes t's repository user's idle connections and keeps those in use from coming back:
// its credential was rejected, so the ones logged in with it are not to be trusted any longer.
// Safe on a nil pool.
func (p *pool) drop(t proxy.Target) {
	if p == nil {
		return
	}
	p.mu.Lock()
	ru := t.Repository.Name + "\x00" + t.User.Username
	p.gen[ru]++
	stale := p.removeLocked(func(k poolKey) bool { return k.repoUser() == ru })
	p.mu.Unlock()
	closeAll(stale)
}

// close closes every idle connection; later ones are closed as they come back. Safe on a nil pool.
func (p *pool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	stale := p.removeLocked(func(poolKey) bool { return true })
	p.mu.Unlock()
	closeAll(stale)
}

// removeLocked takes the idle connections whose key matches out of the pool and stops their
// timers. Called with p.mu held.
func (p *pool) removeLocked(match func(poolKey) bool) []*idleConn {
	var out []*idleConn
	for k, s := range p.idle {
		if !match(k) {
			continue
		}
		for _, ic := range s {
			ic.timer.Stop()
			ic.timer = nil
			out = append(out, ic)
		}
		delete(p.idle, k)
	}
	return out
}

func closeAll(s []*idleConn) {
	for _, ic := range s {
		ic.close()
	}
}

// poolConn is a pooled upstream connection as the session's relay sees it. It withholds the
// client's Terminate (the backend is to outlive the client) and, when the client ended that way
// after a complete request, turns the relay's Close into a hand-back: the connection stays open
// and the relay's reader is woken with net.ErrClosed. releaseUpstream then decides.
type poolConn struct {
	net.Conn
	idle *idleConn

	// Client→upstream framing; used only by Write, which the relay calls from one goroutine.
	hdr      [5]byte
	nhdr     int   // bytes of a message header held back from the previous Write
	body     int64 // bytes of the current message's body still to come
	last     byte  // type of the last message started
	dropping bool  // Terminate was seen: nothing more is sent

	mu         sync.Mutex
	terminated bool // the client sent Terminate
	lastBefore byte // the message type before Terminate (0: none)
	closed     bool
	kept       atomic.Bool // Close left the connection open for release
}

// Write forwards client messages, withholding Terminate and anything after it. A message header
// split across two writes is held back until it is whole, so Terminate is never half sent.
func (c *poolConn) Write(b []byte) (int, error) {
	total := len(b)
	if c.dropping {
		return total, nil
	}
	if c.nhdr > 0 {
		k := copy(c.hdr[c.nhdr:], b)
		if c.nhdr+k < len(c.hdr) {
			c.nhdr += k
			return total, nil
		}
		b = b[k:]
		c.nhdr = 0
		if c.hdr[0] == 'X' {
			c.terminate()
			return total, nil
		}
		c.last = c.hdr[0]
		c.body = int64(binary.BigEndian.Uint32(c.hdr[1:])) - 4
		if _, err := c.Conn.Write(c.hdr[:]); err != nil {
			return 0, err
		}
	}
	if c.dropping {
		return total, nil
	}
	// Walk the message boundaries in b; send everything up to a Terminate or a split header.
	i := 0
	for {
		if c.body > 0 {
			if int64(len(b)-i) <= c.body {
				c.body -= int64(len(b) - i)
				i = len(b)
				break
			}
			i += int(c.body)
			c.body = 0
		}
		if i == len(b) {
			break
		}
		if b[i] == 'X' {
			if _, err := c.Conn.Write(b[:i]); err != nil {
				return 0, err
			}
			c.terminate()
			return total, nil
		}
		if len(b)-i < len(c.hdr) {
			c.nhdr = copy(c.hdr[:], b[i:])
			b = b[:i]
			break
		}
		c.last = b[i]
		c.body = int64(binary.BigEndian.Uint32(b[i+1:])) - 4
		i += len(c.hdr)
	}
	if len(b) > 0 {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (c *poolConn) terminate() {
	c.dropping = true
	c.mu.Lock()
	c.terminated = true
	c.lastBefore = c.last
	c.mu.Unlock()
}

// Read wakes the relay's reader with net.ErrClosed once Close has kept the connection.
func (c *poolConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.kept.Load() {
		return n, net.ErrClosed
	}
	return n, err
}

// Close keeps the connection open when the client ended with Terminate right after a whole
// request (so the server is not inside an extended-protocol batch, whose transaction anything
// sent now would commit); otherwise it closes it, and the server rolls back whatever was open.
func (c *poolConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	switch {
	case !c.terminated:
	case c.lastBefore == 0, c.lastBefore == 'Q', c.lastBefore == 'S', c.lastBefore == 'F':
		c.kept.Store(true)
		return c.Conn.SetReadDeadline(time.Now())
	}
	return c.Conn.Close()
}

// connectPooled gives the session an upstream connection from the pool, or a new one that can go
// back to it.
func (s *session) connectPooled(ctx context.Context, params map[string]string) (*upstreamConn, *pgproto3.ErrorResponse) {
	p := s.e.pool
	t := s.grant.Target
	k := p.key(t, params)
	app := params["application_name"]
	params["application_name"] = pooledApplicationName
	for {
		ic, done, gen, err := p.get(ctx, k)
		if err != nil {
			s.log().Warn("no upstream connection slot came free", "repository", t.Repository.Name, "error", err)
			return nil, fatalResponse(codeCannotConnect, fmt.Sprintf(
				"repository %s: too many connections being opened at once; try again", t.Repository.Name))
		}
		if ic != nil {
			if err := ic.activate(ctx, app); err != nil {
				s.log().Debug("pooled upstream connection unusable; trying another", "error", err)
				ic.close()
				continue
			}
			s.log().Debug("pooled upstream connection reused")
			return s.adopt(ic, nil), nil
		}
		up, errResp := s.connectNew(ctx, params)
		done()
		if errResp != nil {
			return nil, errResp
		}
		ic = &idleConn{key: k, gen: gen, conn: up.conn, r: up.r, w: up.w, tls: up.tls, database: up.database,
			backend: up.key, shared: &s.e.params, born: time.Now()}
		var notices []interface{ Encode([]byte) ([]byte, error) }
		for _, m := range up.initial {
			if ps, ok := m.(*pgproto3.ParameterStatus); ok {
				ic.params = append(ic.params, ps)
			} else {
				notices = append(notices, m)
			}
		}
		if err := ic.activate(ctx, app); err != nil {
			ic.close()
			return nil, s.upstreamErrorResponse(err, gatehouse.Credential{})
		}
		return s.adopt(ic, notices), nil
	}
}

// adopt makes ic the session's upstream connection. The client is told ic's parameters, as the
// server reported them last, after notices from the connection's startup, if any.
func (s *session) adopt(ic *idleConn, notices []interface{ Encode([]byte) ([]byte, error) }) *upstreamConn {
	pc := &poolConn{Conn: ic.conn, idle: ic}
	ic.r.Reset(pc)
	ic.w.Reset(pc)
	up := &upstreamConn{conn: pc, r: ic.r, w: ic.w, tls: ic.tls, database: ic.database, key: ic.backend,
		initial: notices, ready: &pgproto3.ReadyForQuery{TxStatus: 'I'}}
	for _, m := range ic.params {
		up.initial = append(up.initial, m)
	}
	return up
}

// releaseUpstream returns the session's upstream connection to the pool when the relay kept it
// open (see poolConn.Close), after resetting it; otherwise it makes sure it is closed.
func (s *session) releaseUpstream(ctx context.Context) {
	pc, ok := s.upstream.conn.(*poolConn)
	if !ok || !pc.kept.Load() {
		return
	}
	ic := pc.idle
	if !s.e.retire(s) {
		ic.close()
		return
	}
	ic.r.Reset(ic.conn)
	ic.w.Reset(ic.conn)
	if err := ic.reset(context.WithoutCancel(ctx)); err != nil {
		s.log().Debug("upstream connection not pooled", "reason", err)
		ic.close()
		return
	}
	if s.e.pool.put(ic) {
		s.log().Debug("upstream connection returned to the pool")
	}
}

// reset clears the previous session's state (DISCARD ALL: temporary tables, prepared statements,
// portals, SET values, session advisory locks, LISTEN, sequences' cached values, plans) and
// checks, with a nonce nobody else knows, that the answers read are the answers to it.
func (ic *idleConn) reset(ctx context.Context) error {
	var n [16]byte
	rand.Read(n[:])
	nonce := "gatehouse-reset-" + hex.EncodeToString(n[:])
	row := binary.BigEndian.AppendUint16(nil, 1)
	row = binary.BigEndian.AppendUint32(row, uint32(len(nonce)))
	row = append(row, nonce...)
	return ic.exchange(ctx, []string{"DISCARD ALL", "SELECT '" + nonce + "'"}, []reply{
		{'C', []byte("DISCARD ALL\x00")}, {'Z', []byte("I")},
		{'T', nil}, {'D', row}, {'C', []byte("SELECT 1\x00")}, {'Z', []byte("I")},
	})
}

// activate names the session's person on the connection: application_name is what
// pg_stat_activity and the server's log show.
func (ic *idleConn) activate(ctx context.Context, app string) error {
	// PostgreSQL keeps only printable ASCII in application_name; keeping only that here too means
	// the client encoding cannot change how the literal reads.
	app = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(app, "?"))
	return ic.exchange(ctx, []string{"SET application_name = " + quoteLiteral(app)},
		[]reply{{'C', []byte("SET\x00")}, {'Z', []byte("I")}})
}

// reply is a message an exchange expects; a nil body matches any.
type reply struct {
	typ  byte
	body []byte
}

// exchange sends queries in one write and checks the answers are exactly want. ParameterStatus
// may come anywhere and updates ic.params; NoticeResponse and NotificationResponse may too and are
// dropped (they can only concern the previous session). Nothing may follow the last answer.
func (ic *idleConn) exchange(ctx context.Context, queries []string, want []reply) error {
	deadline := time.Now().Add(poolExchangeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ic.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { ic.conn.SetDeadline(time.Now()) })
	err := ic.exchangeLocked(queries, want)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err == nil {
		err = ic.conn.SetDeadline(time.Time{})
	}
	return err
}

func (ic *idleConn) exchangeLocked(queries []string, want []reply) error {
	var b []byte
	for _, q := range queries {
		b, _ = (&pgproto3.Query{String: q}).Encode(b)
	}
	if _, err := ic.w.Write(b); err != nil {
		return err
	}
	if err := ic.w.Flush(); err != nil {
		return err
	}
	for len(want) > 0 {
		typ, body, err := readMessage(ic.r, maxAuthMessageLen)
		if err != nil {
			return err
		}
		switch typ {
		case 'S':
			m, err := ic.shared.get(body)
			if err != nil {
				return err
			}
			ic.setParam(m)
			continue
		case 'N', 'A':
			continue
		}
		w := want[0]
		if typ != w.typ || w.body != nil && !bytes.Equal(body, w.body) {
			if typ == 'E' {
				var m pgproto3.ErrorResponse
				if m.Decode(body) == nil {
					return fmt.Errorf("server answered %s (SQLSTATE %s)", m.Message, m.Code)
				}
			}
			return fmt.Errorf("unexpected message %q where %q was due", typ, w.typ)
		}
		want = want[1:]
	}
	if ic.r.Buffered() > 0 {
		return errors.New("unexpected data after the last answer")
	}
	return nil
}

func (ic *idleConn) setParam(m *pgproto3.ParameterStatus) {
	for i, p := range ic.params {
		if p.Name == m.Name {
			ic.params[i] = m
			return
		}
	}
	ic.params = append(ic.params, m)
}

// quoteLiteral quotes s as an escape string constant, which reads the same whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "E'" + strings.ReplaceAll(s, `'`, `''`) + "'"
}
