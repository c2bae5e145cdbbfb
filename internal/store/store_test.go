package store_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
	"github.com/gatehousedb/gatehouse/internal/store"
)

var (
	pg        *pgserver.Server // one PostgreSQL server per test binary
	dbCounter atomic.Int64
	publicKey string // a valid 2048-bit RSA public key for sidecars
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	pg, err = pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL for the store tests:", err)
		return 1
	}
	defer pg.Stop()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	publicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		return 1
	}
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
		return 1
	}
	return code
}

// backend opens a fresh, empty store.
type backend struct {
	name string
	dsn  func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gatehouse.db") }},
	{"postgres", func(t *testing.T) string {
		name := fmt.Sprintf("store_test_%d", dbCounter.Add(1))
		if err := pg.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		return pg.DSN(name)
	}},
}

// eachBackend runs f as a subtest against a fresh SQLite store and a fresh PostgreSQL store.
func eachBackend(t *testing.T, f func(t *testing.T, s *store.Store, dsn string)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			s, err := store.Open(context.Background(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			})
			f(t, s, dsn)
		})
	}
}

// wantErr fails unless err is a *gatehouse.Error with the given code (and field, when not "").
// code "" means no error.
func wantErr(t *testing.T, err error, code, field string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var e *gatehouse.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want a *gatehouse.Error with code %s", err, err, code)
	}
	if e.Code != code || (field != "" && e.Field != field) {
		t.Fatalf("got %s error on field %q (%v), want %s on %q", e.Code, e.Field, e, code, field)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func version(t *testing.T, s *store.Store) int64 {
	t.Helper()
	v, err := s.ConfigVersion(context.Background())
	must(t, err)
	return v
}

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Fixtures.

func repo(name string, typ gatehouse.DatabaseType, ver string) *gatehouse.Repository {
	r := &gatehouse.Repository{Name: name, Type: typ, Version: ver, Hostname: name + ".db.internal", Database: "app"}
	r.Normalize()
	return r
}

func repoUser(repo, name string) *gatehouse.RepositoryUser {
	return &gatehouse.RepositoryUser{Repository: repo, Username: name,
		Secret: gatehouse.SecretRef{Source: gatehouse.SourceAWSSecretsManager, ARN: "arn:aws:secretsmanager:us-east-2:111111111111:secret:" + name + "-AbCdEf", JSONPath: "password"}}
}

func sidecar(name string) *gatehouse.Sidecar {
	return &gatehouse.Sidecar{DisplayName: name, Hostname: name + ".lb.internal", PublicKey: publicKey}
}

func policy(name, repo string, rules ...gatehouse.ImpersonationRule) *gatehouse.ImpersonationPolicy {
	return &gatehouse.ImpersonationPolicy{Name: name, Repository: repo, Rules: rules}
}

func rule(groups []string, repoUsers ...string) gatehouse.ImpersonationRule {
	return gatehouse.ImpersonationRule{Groups: groups, RepositoryUsers: repoUsers}
}

func user(name string) *gatehouse.User {
	u := &gatehouse.User{Name: name, DisplayName: "User " + name, Role: gatehouse.RoleDataConsumer, Active: true}
	if strings.Contains(name, "@") {
		u.Email = name
	}
	return u
}
