package postgres_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgError connects with pgx and returns the server error it gets.
func connectError(t *testing.T, connString string) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected, want a refusal")
	}
	noPassword(t, err.Error())
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a server error", err)
	}
	noPassword(t, pe.Detail+pe.Hint)
	return pe
}

func TestLoginRefusals(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	tests := []struct {
		name, user, token, extra string
		want                     pgconn.PgError
	}{
		{"wrong token", "scram_user", "gh1_nope", "",
			pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "the access token is not valid: create one with gatehouse token create"}},
		{"no impersonation rule", "scram_user", bobToken, "",
			pgconn.PgError{Severity: "FATAL", Code: "28000", Message: "bob@example.com may not impersonate scram_user on repository sales"}},
		{"unknown repository user", "nobody", aliceToken, "",
			pgconn.PgError{Severity: "FATAL", Code: "28000", Message: "repository sales has no user nobody"}},
		{"unknown repository", "scram_user@hr", aliceToken, "",
			pgconn.PgError{Severity: "FATAL", Code: "28000", Message: "no repository hr on this port"}},
		{"token over plain TCP", "scram_user", aliceToken, "sslmode=disable",
			pgconn.PgError{Severity: "FATAL", Code: "28000", Message: "Gatehouse accepts access tokens only over TLS: connect with sslmode=require (or verify-full)"}},
		{"replication", "scram_user", aliceToken, "replication=database",
			pgconn.PgError{Severity: "FATAL", Code: "0A000", Message: "replication connections are not supported through Gatehouse"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := sc.connString(tc.user, tc.token, "")
			if tc.extra != "" {
				cs = strings.Replace(cs, "sslmode=require", "", 1) + " " + tc.extra
				if !strings.Contains(tc.extra, "sslmode") {
					cs += " sslmode=require"
				}
			}
			pe := connectError(t, cs)
			got := pgconn.PgError{Severity: pe.Severity, Code: pe.Code, Message: pe.Message}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	// psql shows the same, and never got to send the token in the clear.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sc.psqlCmd(ctx, "scram_user", aliceToken, "disable", "-c", "select 1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FATAL:  Gatehouse accepts access tokens only over TLS: connect with sslmode=require") {
		t.Errorf("psql sslmode=disable: %v\n%s", err, out)
	}
}

func TestPlaintextAllowedForDevelopment(t *testing.T) {
	sc := startProxy(t, proxyOptions{plaintext: true, noTLS: true})
	out, err := func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return sc.psqlCmd(ctx, "scram_user", aliceToken, "prefer", "-c", "select current_user").CombinedOutput()
	}()
	if err != nil || strings.TrimSpace(string(out)) != "scram_user" {
		t.Errorf("psql over plain TCP with AllowPlaintextPasswords: %v\n%s", err, out)
	}
	// With no TLS the client's sslmode=require cannot be met: the sidecar answered 'N'.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err = sc.psqlCmd(ctx, "scram_user", aliceToken, "require", "-c", "select 1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "server does not support SSL") {
		t.Errorf("psql sslmode=require against a sidecar without TLS: %v\n%s", err, out)
	}
}

func TestForgedCancelKeyCancelsNothing(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, key := conn.PgConn().PID(), conn.PgConn().SecretKey()
	if len(key) != 4 {
		t.Fatalf("secret key is %d bytes", len(key))
	}
	forged := append([]byte(nil), key...)
	forged[0] ^= 0xff

	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "select pg_sleep(1.5)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	for _, k := range []struct {
		pid uint32
		key []byte
	}{{pid, forged}, {pid + 1, key}, {pid, key[:3]}} {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(sc.port)))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 12+len(k.key))
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		binary.BigEndian.PutUint32(b[4:], 80877102)
		binary.BigEndian.PutUint32(b[8:], k.pid)
		copy(b[12:], k.key)
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 {
			t.Errorf("a forged cancel request got an answer")
		}
	}
	if err := <-done; err != nil {
		t.Errorf("query under forged cancels: %v, want it to run to completion", err)
	}
	if strings.Contains(sc.logs.String(), "cancel request forwarded") {
		t.Error("a forged key was forwarded")
	}
	waitForLog(t, sc, "cancel request with an unknown key ignored")
}

func itoa(i int) string { return strconv.Itoa(i) }

// sessionEnd runs "select 1" until the session fails, and returns the error.
func sessionEnd(t *testing.T, conn *pgx.Conn) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, err := conn.Exec(ctx, "select 1")
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("session ended with %v, want a FATAL from the sidecar", err)
			}
			return pe
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRevokedMidSession(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	revoked, revoke := context.WithCancel(context.Background())
	sc.auth.set(func(a *authorizer) { a.revoked = revoked })
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if _, err := conn.Exec(context.Background(), "select 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	revoke()
	pe := sessionEnd(t, conn)
	if diff := cmp.Diff([]string{"FATAL", "57P01", "access token revoked"}, []string{pe.Severity, pe.Code, pe.Message}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("revocation took %v to end the session", d)
	}
	waitForLog(t, sc, "ended_by=token_revoked")
}

func TestTokenExpiryEndsSession(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	sc.auth.set(func(a *authorizer) { a.expiresAt = exp })
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	pe := sessionEnd(t, conn)
	want := "access token expired at " + exp.UTC().Format(time.RFC3339) + "; create a new one (gatehouse token create) and reconnect"
	if diff := cmp.Diff([]string{"FATAL", "57P01", want}, []string{pe.Severity, pe.Code, pe.Message}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if time.Now().Before(exp) {
		t.Errorf("session ended before the token expired")
	}
}

func TestRotatedPasswordPickedUp(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx := context.Background()
	out, err := sc.psql(t, "rot_user", aliceToken, "-d", "postgres", "-c", "select current_user")
	if err != nil || out != "rot_user" {
		t.Fatalf("before rotation: %v\n%s", err, out)
	}
	old := passwords["rot_user"]
	newPW := randomHex(12)
	passwords["rot_user_old"] = old
	passwords["rot_user"] = newPW
	if err := srv.Exec(ctx, "ALTER ROLE rot_user PASSWORD '"+newPW+"'"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envName("rot_user"), newPW)
	// Pooled connections logged in with the old password stay valid, as any session would, until
	// they are ended, as whoever rotates a password to shut someone out does.
	terminateBackends(t, "rot_user")
	// The sidecar still has the old password cached; the repository rejects it once.
	out, err = sc.psql(t, "rot_user", aliceToken, "-d", "postgres", "-c", "select current_user")
	if err != nil || out != "rot_user" {
		t.Fatalf("after rotation: %v\n%s", err, out)
	}
	logs := sc.logs.String()
	if strings.Count(logs, "repository rejected the credential; fetching it again") != 1 || !strings.Contains(logs, "secret invalidated") {
		t.Errorf("log does not show one re-fetch:\n%s", logs)
	}
	// A password that is wrong at the source too is reported as the server's error, after one retry.
	third := randomHex(12)
	passwords["rot_user_third"] = third
	if err := srv.Exec(ctx, "ALTER ROLE rot_user PASSWORD '"+third+"'"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envName("rot_user"), "definitely-wrong")
	terminateBackends(t, "rot_user")
	out, err = sc.psql(t, "rot_user", aliceToken, "-d", "postgres", "-c", "select 1")
	if err == nil || !strings.Contains(out, `password authentication failed for user "rot_user"`) {
		t.Errorf("wrong password at the source: %v\n%s", err, out)
	}
}

func TestMissingSecret(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	t.Setenv(envName("scram_user"), "")
	os.Unsetenv(envName("scram_user"))
	pe := connectError(t, sc.connString("scram_user", aliceToken, ""))
	want := "Gatehouse cannot fetch the credential of repository user scram_user; an administrator can find why in the sidecar's log"
	if diff := cmp.Diff([]string{"08001", want}, []string{pe.Code, pe.Message}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	waitForLog(t, sc, "environment variable GH_TEST_PW_SCRAM_USER is not set on the sidecar")
}

func TestShutdownDrains(t *testing.T) {
	t.Run("idle engine", func(t *testing.T) {
		sc := startProxy(t, proxyOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := sc.engine.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown with no sessions: %v", err)
		}
	})
	t.Run("session finishes before the deadline", func(t *testing.T) {
		sc := startProxy(t, proxyOptions{})
		conn := sc.pgx(t, "scram_user", aliceToken, "")
		res := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res <- sc.engine.Shutdown(ctx)
		}()
		time.Sleep(200 * time.Millisecond)
		// Still served while draining.
		if _, err := conn.Exec(context.Background(), "select pg_sleep(0.2)"); err != nil {
			t.Errorf("query while draining: %v", err)
		}
		conn.Close(context.Background())
		if err := <-res; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	t.Run("deadline ends sessions", func(t *testing.T) {
		sc := startProxy(t, proxyOptions{})
		conn := sc.pgx(t, "scram_user", aliceToken, "")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := sc.engine.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want deadline exceeded", err)
		}
		pe := sessionEnd(t, conn)
		if diff := cmp.Diff([]string{"FATAL", "57P01", "server is shutting down"}, []string{pe.Severity, pe.Code, pe.Message}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
