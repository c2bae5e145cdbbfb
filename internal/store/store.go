package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

type dialect int

const (
	sqlite dialect = iota
	postgres
)

// Store persists the control plane's objects in SQLite or PostgreSQL. It is safe for concurrent use,
// and on PostgreSQL by several control-plane replicas at once.
type Store struct {
	dialect dialect
	db      *sql.DB // writes (and, on PostgreSQL, reads)
	rdb     *sql.DB // reads; on SQLite a separate read-only pool so readers never wait for the writer
	logger  *slog.Logger
	now     func() time.Time
}

// Open opens the store at dsn and brings its schema up to date. A dsn starting with "postgres://"
// or "postgresql://" is a PostgreSQL connection URL; anything else is the path of a SQLite database
// file, created if missing.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{logger: logger.With("component", "store"), now: time.Now}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s.dialect = postgres
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgresql store: %w", err)
		}
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(5)
		db.SetConnMaxIdleTime(5 * time.Minute)
		s.db, s.rdb = db, db
	} else {
		if dsn == "" {
			return nil, errors.New("open sqlite store: empty database path")
		}
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		// synchronous=FULL: a commit is on disk when it returns. The API acknowledges activity
		// batches after their commit and the sidecar then deletes them from its spool, so a commit
		// lost to a power failure (possible with NORMAL in WAL mode) would be a hole in the trail.
		common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
		// One writer: a single connection whose transactions take the write lock at BEGIN, so two
		// writers never deadlock upgrading read locks.
		db, err := sql.Open("sqlite", dsn+sep+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open sqlite store: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		s.db = db
		// Switch the file to WAL before the readers open it.
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("open sqlite store %s: %w", dsn, err)
		}
		rdb, err := sql.Open("sqlite", dsn+sep+common+"&_pragma=query_only(1)")
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open sqlite store: %w", err)
		}
		rdb.SetMaxOpenConns(4)
		s.rdb = rdb
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect to store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database connections.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.rdb != s.db {
		if rerr := s.rdb.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// q turns a query written with '?' placeholders into the dialect's form ($1, $2... on PostgreSQL).
// Queries in this package never contain a literal '?'.
func (s *Store) q(query string) string {
	if s.dialect != postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// tx is a transaction that rewrites placeholders for its dialect.
type tx struct {
	s  *Store
	tx *sql.Tx
}

func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.s.q(query), args...)
}

func (t *tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.s.q(query), args...)
}

func (t *tx) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.s.q(query), args...)
}

// bumpConfig increments the config version; called by every change a sidecar would see, in the
// transaction making the change.
func (t *tx) bumpConfig(ctx context.Context) error {
	if _, err := t.exec(ctx, "UPDATE config_version SET version = version + 1 WHERE id = 1"); err != nil {
		return fmt.Errorf("bump config version: %w", err)
	}
	return nil
}

// exists reports whether query returns a row.
func (t *tx) exists(ctx context.Context, query string, args ...any) (bool, error) {
	var one int
	err := t.queryRow(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// inTx runs fn in a write transaction, committing if it returns nil and rolling back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(*tx) error) error {
	return s.run(ctx, s.db, nil, fn)
}

// inReadTx runs fn in a read-only transaction, for reads that need a consistent view of two tables.
func (s *Store) inReadTx(ctx context.Context, fn func(*tx) error) error {
	return s.run(ctx, s.rdb, &sql.TxOptions{ReadOnly: true}, fn)
}

func (s *Store) run(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(*tx) error) error {
	sqlTx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(&tx{s: s, tx: sqlTx}); err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.rdb.QueryContext(ctx, s.q(query), args...)
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.rdb.QueryRowContext(ctx, s.q(query), args...)
}

// timeLayout stores times as fixed-width UTC text, which sorts and compares correctly as a string in
// both dialects.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t, nil
}

// stamp returns the current time as the store records it: UTC, to the microsecond, so what Create
// sets on the caller's struct equals what Get returns later.
func (s *Store) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	return string(b), nil
}

func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decode stored JSON: %w", err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// newID returns a random, lowercase, URL-safe identifier of 20 base32 characters (100 bits).
func newID() string {
	b := make([]byte, 13)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:20]
}

// dependents formats the Conflict returned when a delete is blocked.
func dependents(what string, deps []string) error {
	return gatehouse.Conflict("%s has dependents: %s; delete them first or use --cascade", what, strings.Join(deps, ", "))
}
