package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehousedb/gatehouse"
)

// psqlCmd runs psql against the sidecar with the token as the password.
func (sc *sidecar) psqlCmd(ctx context.Context, user, token, sslmode string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "psql", append([]string{"-X", "-At", "-v", "ON_ERROR_STOP=1"}, args...)...)
	cmd.Env = append(os.Environ(),
		"PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(sc.port), "PGUSER="+user, "PGPASSWORD="+token,
		"PGSSLMODE="+sslmode, "PGCONNECT_TIMEOUT=20")
	return cmd
}

func (sc *sidecar) psql(t *testing.T, user, token string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := sc.psqlCmd(ctx, user, token, "require", args...).CombinedOutput()
	noPassword(t, string(out))
	return strings.TrimSpace(string(out)), err
}

// noPassword fails the test if s, something a client was shown, holds an upstream password.
func noPassword(t *testing.T, s string) {
	t.Helper()
	for u, pw := range passwords {
		if strings.Contains(s, pw) {
			t.Errorf("client output contains the password of %s", u)
		}
	}
}

func (sc *sidecar) connString(user, token, extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s sslmode=require %s", sc.port, user, token, extra)
}

func (sc *sidecar) pgx(t *testing.T, user, token, extra string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, sc.connString(user, token, extra))
	if err != nil {
		t.Fatalf("connect through the sidecar: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPsql(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	out, err := sc.psql(t, "scram_user", aliceToken, "-c",
		"select current_user, current_database(), application_name, ssl from pg_stat_activity join pg_stat_ssl using (pid) where pid = pg_backend_pid()")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if diff := cmp.Diff("scram_user|app|psql (gatehouse:alice@example.com)|t", out); diff != "" {
		t.Errorf("session as seen by the repository (-want +got):\n%s", diff)
	}

	// The repository name may be given with the user; the database the client asks for wins.
	out, err = sc.psql(t, "scram_user@sales", aliceToken, "-d", "postgres", "-c", "select current_user || ' ' || current_database()")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if diff := cmp.Diff("scram_user postgres", out); diff != "" {
		t.Errorf("user@repository (-want +got):\n%s", diff)
	}
	if got := sc.auth.lastLogin(); got.Username != "scram_user@sales" || got.Port != sc.port || got.Token != aliceToken {
		t.Errorf("login given to the Authorizer: %+v", got)
	}

	// Transactions, errors inside them, several statements in one Query, NOTICEs.
	out, err = sc.psql(t, "scram_user", aliceToken, "-v", "ON_ERROR_STOP=0",
		"-c", "create temp table t (id int primary key, v text)",
		"-c", "begin",
		"-c", "insert into t values (1, 'a')",
		"-c", "insert into t values (1, 'dup')",
		"-c", "rollback",
		"-c", "insert into t values (2, 'b')",
		"-c", "do $$ begin raise notice 'hello from %', current_user; end $$; select string_agg(id::text || v, ',') from t")
	if !strings.Contains(out, "duplicate key value violates unique constraint") ||
		!strings.Contains(out, "NOTICE:  hello from scram_user") || !strings.HasSuffix(out, "2b") {
		t.Errorf("psql script output:\n%s", out)
	}
}

func TestPsqlCopyBothWays(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	var b strings.Builder
	for i := range 50000 {
		fmt.Fprintf(&b, "%d,row %d with some text to make it longer\n", i, i)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "out.csv")
	script := fmt.Sprintf(`
		create temp table c (id int, v text);
		\copy c from '%s' with (format csv)
		select count(*), sum(id) from c;
		\copy (select * from c order by id) to '%s' with (format csv)
	`, in, outFile)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := sc.psqlCmd(ctx, "scram_user", aliceToken, "require", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, res)
	}
	if diff := cmp.Diff("CREATE TABLE\nCOPY 50000\n50000|1249975000\nCOPY 50000", strings.TrimSpace(string(res))); diff != "" {
		t.Errorf("psql output (-want +got):\n%s", diff)
	}
	got, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Errorf("\\copy to: %d bytes differ from the %d copied in", len(got), b.Len())
	}
}

func TestPsqlCancelWithSIGINT(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := sc.psqlCmd(ctx, "scram_user", aliceToken, "require", "-c", "select pg_sleep(30)")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, sc, "session started")
	time.Sleep(300 * time.Millisecond) // let the query reach the server
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("psql succeeded; output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "canceling statement due to user request") {
		t.Errorf("psql output after SIGINT:\n%s", out.String())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancel took %v", d)
	}
	waitForLog(t, sc, "cancel request forwarded")
}

// waitForLog waits until the sidecar's log contains s.
func waitForLog(t *testing.T, sc *sidecar, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(sc.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPgx(t *testing.T) {
	aud := &fakeAuditor{t: t}
	sc := startProxy(t, proxyOptions{auditor: aud})
	conn := sc.pgx(t, "scram_user", aliceToken, "application_name=reports database=app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("extended protocol", func(t *testing.T) {
		var user, app string
		var n int
		err := conn.QueryRow(ctx, "select current_user, application_name, $1::int + 1 from pg_stat_activity where pid = pg_backend_pid()", 41).Scan(&user, &app, &n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]any{"scram_user", "reports (gatehouse:alice@example.com)", 42}, []any{user, app, n}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("large result", func(t *testing.T) {
		var total int64
		rows, err := conn.Query(ctx, "select g, repeat('x', 1000) from generate_series(1, 20000) g")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var g int64
			var s string
			if err := rows.Scan(&g, &s); err != nil {
				t.Fatal(err)
			}
			total += g + int64(len(s))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := int64(20000*20001/2 + 20000*1000); total != want {
			t.Errorf("total = %d, want %d", total, want)
		}
		var big string
		if err := conn.QueryRow(ctx, "select repeat('y', 20*1024*1024)").Scan(&big); err != nil || len(big) != 20<<20 {
			t.Errorf("20 MB value: len %d, err %v", len(big), err)
		}
	})
	t.Run("batch", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "create temp table bt (id int)"); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		for i := range 10 {
			b.Queue("insert into bt values ($1)", i)
		}
		b.Queue("select sum(id) from bt")
		br := conn.SendBatch(ctx, b)
		for range 10 {
			if _, err := br.Exec(); err != nil {
				t.Fatal(err)
			}
		}
		var sum int
		if err := br.QueryRow().Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if sum != 45 {
			t.Errorf("sum = %d, want 45", sum)
		}
	})
	t.Run("copy", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "create temp table ct (id int, name text)"); err != nil {
			t.Fatal(err)
		}
		rows := make([][]any, 10000)
		for i := range rows {
			rows[i] = []any{i, fmt.Sprintf("name %d", i)}
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"ct"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
		if err != nil || n != 10000 {
			t.Fatalf("CopyFrom: %d rows, %v", n, err)
		}
		var out strings.Builder
		tag, err := conn.PgConn().CopyTo(ctx, &out, "copy (select * from ct where id < 3 order by id) to stdout")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("0\tname 0\n1\tname 1\n2\tname 2\n", out.String()); diff != "" || tag.RowsAffected() != 3 {
			t.Errorf("CopyTo (-want +got):\n%s", diff)
		}
		// A COPY the server rejects midway leaves the session usable.
		_, err = conn.CopyFrom(ctx, pgx.Identifier{"ct"}, []string{"id", "name"}, pgx.CopyFromRows([][]any{{1, "a"}, {"not a number", "b"}}))
		if err == nil {
			t.Error("CopyFrom with a bad row succeeded")
		}
		var c int
		if err := conn.QueryRow(ctx, "select count(*) from ct").Scan(&c); err != nil || c != 10000 {
			t.Errorf("after failed COPY: count %d, %v", c, err)
		}
	})
	t.Run("errors and parameter changes", func(t *testing.T) {
		_, err := conn.Exec(ctx, "select 1/0")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "22012" {
			t.Errorf("1/0: %v", err)
		}
		if _, err := conn.Exec(ctx, "set timezone = 'Asia/Tokyo'"); err != nil {
			t.Fatal(err)
		}
		if got := conn.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
			t.Errorf("ParameterStatus TimeZone = %q", got)
		}
	})
	t.Run("listen notify", func(t *testing.T) {
		other := sc.pgx(t, "scram_user", aliceToken, "")
		if _, err := conn.Exec(ctx, "listen gh_channel"); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, "select pg_notify('gh_channel', 'hello')"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Channel != "gh_channel" || n.Payload != "hello" {
			t.Errorf("notification %+v", n)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		p := conn.PgConn().StartPipeline(ctx)
		p.SendQueryParams("select $1::text", [][]byte{[]byte("a")}, nil, nil, nil)
		p.SendQueryParams("select $1::text", [][]byte{[]byte("b")}, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 2 {
			res, err := p.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			r := res.(*pgconn.ResultReader).Read()
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got = append(got, string(r.Rows[0][0]))
		}
		if _, err := p.GetResults(); err != nil { // the Sync's ReadyForQuery
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	conn.Close(ctx)
	aud.waitClosed(t, 1)
	stmts := aud.statements()
	if len(stmts) == 0 || !strings.HasPrefix(stmts[0], "extended:select current_user") {
		t.Errorf("auditor saw %q", stmts)
	}
	aud.checkComplete(t)
}

func TestPgxCancel(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The client sees the sidecar's key, not the upstream backend's.
	var backendPID uint32
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&backendPID); err != nil {
		t.Fatal(err)
	}
	if conn.PgConn().PID() == backendPID {
		t.Errorf("client was given the upstream backend's pid %d", backendPID)
	}

	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "select pg_sleep(30)")
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Errorf("cancelled query: %v, want SQLSTATE 57014", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("query not cancelled")
	}
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Errorf("session after cancel: %v", err)
	}
}

func TestPgbench(t *testing.T) {
	sc := startProxy(t, proxyOptions{database: "bench"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"-i", "-s", "1", "-q"},
		{"-T", "3", "-c", "4", "-j", "2", "-M", "prepared"},
	} {
		cmd := exec.CommandContext(ctx, "pgbench", args...)
		cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(sc.port), "PGUSER=scram_user",
			"PGPASSWORD="+aliceToken, "PGSSLMODE=require", "PGDATABASE=bench")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		if args[0] == "-T" && (!strings.Contains(string(out), "number of failed transactions: 0") || !strings.Contains(string(out), "tps =")) {
			t.Errorf("pgbench run:\n%s", out)
		}
	}
}

func TestUpstreamAuthMethods(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	for _, u := range repoUsers {
		if u.name == "rot_user" {
			continue
		}
		t.Run(u.method+" "+u.name, func(t *testing.T) {
			out, err := sc.psql(t, u.name, aliceToken, "-d", "postgres", "-c", "select current_user")
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, out)
			}
			if out != u.name {
				t.Errorf("current_user = %q", out)
			}
		})
	}
	// md5 really was md5: the role's stored verifier is an MD5 hash, which SCRAM cannot use.
	ctx := context.Background()
	su, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var isMD5 bool
	if err := su.QueryRow(ctx, "select rolpassword like 'md5%' from pg_authid where rolname = 'md5_user'").Scan(&isMD5); err != nil || !isMD5 {
		t.Errorf("md5_user's password is not stored as MD5 (%v)", err)
	}
}

func TestUpstreamTLSModes(t *testing.T) {
	tests := []struct {
		name     string
		mode     gatehouse.TLSMode
		ca       string
		host     string
		user     string
		wantSSL  string
		wantFail string
	}{
		{name: "verify-full", mode: gatehouse.TLSVerifyFull, ca: caPEM, user: "scram_user", wantSSL: "t"},
		{name: "verify-ca by IP", mode: gatehouse.TLSVerifyCA, ca: caPEM, host: "127.0.0.1", user: "scram_user", wantSSL: "t"},
		{name: "require", mode: gatehouse.TLSRequire, user: "scram_user", wantSSL: "t"},
		{name: "prefer", mode: gatehouse.TLSPrefer, user: "scram_user", wantSSL: "t"},
		{name: "allow falls back to TLS for hostssl", mode: gatehouse.TLSAllow, user: "ssl_user", wantSSL: "t"},
		{name: "allow", mode: gatehouse.TLSAllow, user: "scram_user", wantSSL: "f"},
		{name: "disable", mode: gatehouse.TLSDisable, user: "scram_user", wantSSL: "f"},
		{name: "disable against hostssl", mode: gatehouse.TLSDisable, user: "ssl_user",
			wantFail: `no pg_hba.conf entry for host "127.0.0.1", user "ssl_user", database "postgres", no encryption`},
		{name: "verify-full with the wrong CA", mode: gatehouse.TLSVerifyFull, ca: otherCA, user: "scram_user",
			wantFail: "FATAL:  repository sales: TLS handshake with localhost:" + strconv.Itoa(srv.Port()) +
				" (tls_mode verify-full): tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{name: "verify-ca with the wrong CA", mode: gatehouse.TLSVerifyCA, ca: otherCA, user: "scram_user",
			wantFail: "x509: certificate signed by unknown authority"},
		{name: "verify-full with a name not in the certificate", mode: gatehouse.TLSVerifyFull, ca: caPEM, host: "db.wrong-name.test", user: "scram_user",
			wantFail: "x509: certificate is valid for localhost, not db.wrong-name.test"},
		{name: "verify-ca ignores the name", mode: gatehouse.TLSVerifyCA, ca: caPEM, host: "db.wrong-name.test", user: "scram_user", wantSSL: "t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := startProxy(t, proxyOptions{tlsMode: tc.mode, caBundle: tc.ca, hostname: tc.host, database: "postgres"})
			out, err := sc.psql(t, tc.user, aliceToken, "-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(out, tc.wantFail) {
					t.Errorf("psql: err %v, output:\n%s\nwant it to contain %q", err, out, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, out)
			}
			if out != tc.wantSSL {
				t.Errorf("upstream ssl = %q, want %q", out, tc.wantSSL)
			}
		})
	}
}
