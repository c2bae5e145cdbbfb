package mysql_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	drv "github.com/go-sql-driver/mysql"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql"
)

// open returns a go-sql-driver pool through the engine at addr.
func open(t *testing.T, addr, user, token string, mod func(*drv.Config)) *sql.DB {
	t.Helper()
	c := drv.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, token, "tcp", addr, "app"
	c.TLSConfig = "skip-verify"
	c.Timeout = 5 * time.Second
	if mod != nil {
		mod(c)
	}
	conn, err := drv.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

func myErr(err error) *drv.MySQLError {
	var me *drv.MySQLError
	if errors.As(err, &me) {
		return me
	}
	return nil
}

func TestGoSQLDriver(t *testing.T) {
	for _, mode := range []gatehouse.TLSMode{gatehouse.TLSDisable, gatehouse.TLSVerifyFull} {
		t.Run(string(mode), func(t *testing.T) {
			h := startEngine(t, nil)
			h.auth.add("tok-app", grant("app", mode))
			db := open(t, h.addr, "app", "tok-app", func(c *drv.Config) { c.MultiStatements = true })
			ctx := context.Background()

			// Text protocol.
			var name string
			if err := db.QueryRowContext(ctx, "SELECT name FROM t WHERE id = 1").Scan(&name); err != nil || name != "one" {
				t.Fatalf("text query: %q, %v", name, err)
			}
			// Prepared statement (binary protocol) with a parameter.
			stmt, err := db.PrepareContext(ctx, "SELECT name FROM t WHERE id = ?")
			if err != nil {
				t.Fatal(err)
			}
			if err := stmt.QueryRowContext(ctx, 2).Scan(&name); err != nil || name != "two" {
				t.Fatalf("prepared query: %q, %v", name, err)
			}
			stmt.Close()
			// Several statements, several result sets.
			rows, err := db.QueryContext(ctx, "SELECT 1; SELECT 2, 3")
			if err != nil {
				t.Fatal(err)
			}
			var got [][]int
			for {
				cols, _ := rows.Columns()
				for rows.Next() {
					vals := make([]int, len(cols))
					ptrs := make([]any, len(cols))
					for i := range vals {
						ptrs[i] = &vals[i]
					}
					if err := rows.Scan(ptrs...); err != nil {
						t.Fatal(err)
					}
					got = append(got, vals)
				}
				if !rows.NextResultSet() {
					break
				}
			}
			rows.Close()
			if diff := cmp.Diff([][]int{{1}, {2, 3}}, got); diff != "" {
				t.Errorf("multi-results (-want +got):\n%s", diff)
			}
			// A value over 16 MiB: split packets both ways.
			big := bytes.Repeat([]byte("0123456789abcdef"), (17<<20)/16)
			if _, err := db.ExecContext(ctx, "REPLACE INTO blobs VALUES (?, ?)", len(mode), big); err != nil {
				t.Fatal(err)
			}
			var back []byte
			if err := db.QueryRowContext(ctx, "SELECT b FROM blobs WHERE id = ?", len(mode)).Scan(&back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(big, back) {
				t.Errorf("17 MiB value came back as %d bytes", len(back))
			}
			// The repository sees who is connected.
			var program, ghUser string
			err = db.QueryRowContext(ctx, `SELECT
				(SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME = 'program_name'),
				(SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = CONNECTION_ID() AND ATTR_NAME = 'gatehouse_user')`).Scan(&program, &ghUser)
			if err != nil {
				t.Fatal(err)
			}
			if program != "gatehouse:alice@example.com" || ghUser != "alice@example.com" {
				t.Errorf("program_name %q, gatehouse_user %q", program, ghUser)
			}
			var ssl string
			db.SetMaxOpenConns(1)
			if err := db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if (ssl != "") != (mode == gatehouse.TLSVerifyFull) {
				t.Errorf("upstream Ssl_cipher %q with tls_mode %s", ssl, mode)
			}
			// Every statement went through the Auditor, prepared executions with their text.
			var execs int
			for _, st := range h.statements() {
				if st.Path == proxy.PathExtended {
					execs++
					if st.SQL != "SELECT name FROM t WHERE id = ?" && !strings.HasPrefix(st.SQL, "REPLACE") && !strings.HasPrefix(st.SQL, "SELECT b FROM") {
						t.Errorf("execution carries text %q", st.SQL)
					}
				}
			}
			if execs != 3 {
				t.Errorf("%d executions seen by the hook; want 3", execs)
			}
		})
	}
}

func TestDeniedStatementKeepsSession(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	db := open(t, h.addr, "app", "tok-app", nil)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	var connID int
	if err := db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&connID); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT 'forbidden'", "SELECT ? /* forbidden */"} {
		var s string
		var err error
		if strings.Contains(q, "?") {
			err = db.QueryRowContext(ctx, q, 1).Scan(&s)
		} else {
			err = db.QueryRowContext(ctx, q).Scan(&s)
		}
		me := myErr(err)
		if me == nil || me.Number != 1142 || string(me.SQLState[:]) != "42000" || !strings.Contains(me.Message, "no-forbidden") {
			t.Errorf("%s: %v; want ERR 1142 (42000) naming the rule", q, err)
		}
	}
	var again int
	if err := db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&again); err != nil || again != connID {
		t.Errorf("after refusals: connection %d, %v; want the same session %d", again, err, connID)
	}
}

func TestLoginRefusals(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	expired := grant("app", gatehouse.TLSDisable)
	expired.Identity.TokenExpiresAt = time.Now().Add(-time.Minute)
	h.auth.add("tok-old", expired)
	h.auth.add("tok-ssl", grant("ssl_user", gatehouse.TLSDisable))
	cases := []struct {
		name, user, token string
		noTLS             bool
		code              uint16
		msg               string
	}{
		{"no TLS", "app", "tok-app", true, 1045, "--ssl-mode=REQUIRED"},
		{"bad token", "app", "nope", false, 1045, "access token not recognised"},
		{"expired token", "app", "tok-old", false, 1045, "access token expired"},
		{"no impersonation rule", "rot_user", "tok-app", false, 1045, "may not connect as rot_user"},
		{"empty password", "app", "", false, 1045, "no password given"},
		{"repository requires TLS", "ssl_user", "tok-ssl", false, 1045, "Access denied for user 'ssl_user'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t, h.addr, tc.user, tc.token, func(c *drv.Config) {
				if tc.noTLS {
					c.TLSConfig = "false"
				}
			})
			err := db.PingContext(context.Background())
			me := myErr(err)
			if me == nil || me.Number != tc.code || !strings.Contains(me.Message, tc.msg) {
				t.Errorf("got %v; want ERROR %d containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

func TestTLSModeAllowRetriesWithTLS(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-ssl", grant("ssl_user", gatehouse.TLSAllow))
	db := open(t, h.addr, "ssl_user", "tok-ssl", nil)
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPlaintextForDevelopment(t *testing.T) {
	h := startEngine(t, func(c *mysql.Config) { c.AllowPlaintextPasswords = true; c.TLS = nil })
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	db := open(t, h.addr, "app", "tok-app", func(c *drv.Config) { c.TLSConfig = "false"; c.AllowCleartextPasswords = true })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLocalInfileRefused(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	f := t.TempDir() + "/rows.csv"
	os.WriteFile(f, []byte("7,seven\n"), 0o600)
	drv.RegisterLocalFile(f)
	db := open(t, h.addr, "app", "tok-app", func(c *drv.Config) { c.AllowAllFiles = true })
	_, err := db.ExecContext(context.Background(), "LOAD DATA LOCAL INFILE '"+f+"' INTO TABLE t FIELDS TERMINATED BY ','")
	if err == nil {
		t.Fatal("LOAD DATA LOCAL INFILE succeeded; want it refused")
	}
	t.Logf("refused: %v", err)
}

func TestKillQuery(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	h.auth.add("tok-bob", func() *proxyGrant {
		g := grant("app", gatehouse.TLSDisable)
		g.Identity.User = "bob@example.com"
		return g
	}())
	tlsCfg := func(c *client.Conn) error { c.SetTLSConfig(&tls.Config{InsecureSkipVerify: true}); return nil }
	a, err := client.Connect(h.addr, "app", "tok-app", "app", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ourID := a.GetConnectionID()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := a.Execute("SELECT SLEEP(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)

	bob, err := client.Connect(h.addr, "app", "tok-bob", "app", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Execute("KILL QUERY " + itoa(ourID)); err == nil || !strings.Contains(err.Error(), "not owner") {
		t.Errorf("another person's KILL QUERY: %v; want refused", err)
	}
	if _, err := bob.Execute("KILL QUERY 987654"); err == nil || !strings.Contains(err.Error(), "Unknown thread id") {
		t.Errorf("KILL QUERY of an unknown id: %v", err)
	}

	b, err := client.Connect(h.addr, "app", "tok-app", "app", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Execute("KILL QUERY " + itoa(ourID)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("killed query returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("query still running 10s after KILL QUERY")
	}
	// The session survives a killed query.
	if _, err := a.Execute("SELECT 1"); err != nil {
		t.Errorf("session after KILL QUERY: %v", err)
	}
}

func TestSessionEnds(t *testing.T) {
	h := startEngine(t, nil)
	short := grant("app", gatehouse.TLSDisable)
	short.Identity.TokenExpiresAt = time.Now().Add(1500 * time.Millisecond)
	h.auth.add("tok-short", short)
	revoked, revoke := context.WithCancel(context.Background())
	rg := grant("app", gatehouse.TLSDisable)
	rg.Revoked = revoked
	h.auth.add("tok-rev", rg)
	ctx := context.Background()
	for _, tc := range []struct {
		token, msg string
		trigger    func()
	}{
		{"tok-short", "access token expired", func() { time.Sleep(2 * time.Second) }},
		{"tok-rev", "access token revoked", func() { revoke() }},
	} {
		db := open(t, h.addr, "app", tc.token, nil)
		db.SetMaxOpenConns(1)
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		tc.trigger()
		time.Sleep(200 * time.Millisecond)
		var n int
		err = conn.QueryRowContext(ctx, "SELECT 1").Scan(&n)
		if err == nil {
			t.Errorf("%s: query after the session should have ended succeeded", tc.token)
		} else {
			t.Logf("%s: %v", tc.token, err)
		}
		conn.Close()
	}
}

func TestMariaDBCLI(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	host, port, _ := strings.Cut(h.addr, ":")
	run := func(args ...string) (string, error) {
		cmd := exec.Command("mariadb", append([]string{"--no-defaults", "-h", host, "-P", port, "-u", "app", "--batch", "--skip-column-names"}, args...)...)
		cmd.Env = append(os.Environ(), "MYSQL_PWD=tok-app")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("--ssl", "-e", "SELECT name FROM t ORDER BY id; SELECT VERSION() LIKE '10.11%'", "app")
	if err != nil {
		t.Fatalf("mariadb --ssl: %v\n%s", err, out)
	}
	if diff := cmp.Diff("one\ntwo\n1\n", out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	out, err = run("--skip-ssl", "-e", "SELECT 1")
	if err == nil || !strings.Contains(out, "ERROR 1045 (28000)") || !strings.Contains(out, "--ssl-mode=REQUIRED") {
		t.Errorf("mariadb without TLS: %v\n%s", err, out)
	}
	out, err = run("--ssl", "-e", "SELECT 'forbidden'")
	if err == nil || !strings.Contains(out, "ERROR 1142 (42000)") {
		t.Errorf("denied statement: %v\n%s", err, out)
	}
}

// TestGovernance checks what the Auditor is told: one record per statement of a multi-statement
// text, each completed with its rows or error number, the ones after an error as not executed;
// prepared executions; the default database after USE and COM_INIT_DB.
func TestGovernance(t *testing.T) {
	h := startEngine(t, nil)
	h.auth.add("tok-app", grant("app", gatehouse.TLSDisable))
	db := open(t, h.addr, "app", "tok-app", func(c *drv.Config) { c.MultiStatements = true })
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// refsOf returns the record references the last statement with this text was given.
	lastRefs := func() []uint64 {
		h.audit.mu.Lock()
		defer h.audit.mu.Unlock()
		n := h.audit.next
		var out []uint64
		last := h.audit.stmts[len(h.audit.stmts)-1]
		for _, part := range strings.Split(last.SQL, ";") {
			if strings.TrimSpace(part) != "" {
				out = append(out, 0)
			}
		}
		for i := range out {
			out[i] = n - uint64(len(out)) + uint64(i) + 1
		}
		return out
	}
	wait := func(refs []uint64, want []proxy.Completion) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got []proxy.Completion
			for _, r := range refs {
				if c, ok := h.audit.completion(r); ok {
					c.Duration = 0
					got = append(got, c)
				}
			}
			diff := cmp.Diff(want, got)
			if diff == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("completions (-want +got):\n%s", diff)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	rows, err := conn.QueryContext(ctx, "SELECT id FROM t; SELECT 2, 3")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() || rows.NextResultSet() {
	}
	rows.Close()
	wait(lastRefs(), []proxy.Completion{{Rows: 2}, {Rows: 1}})

	_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES (10, 'ten'); SELECT nosuchcol FROM t; SELECT 1")
	if me := myErr(err); me == nil || me.Number != 1054 {
		t.Fatalf("multi-statement with an error: %v; want 1054", err)
	}
	wait(lastRefs(), []proxy.Completion{{Rows: 1}, {ErrorCode: "1054"}, {NotExecuted: true}})
	if _, err := conn.ExecContext(ctx, "DELETE FROM t WHERE id = 10"); err != nil {
		t.Fatal(err)
	}
	wait(lastRefs(), []proxy.Completion{{Rows: 1}})

	stmt, err := conn.PrepareContext(ctx, "SELECT name FROM t WHERE id IN (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	prows, err := stmt.QueryContext(ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for prows.Next() {
	}
	prows.Close()
	stmt.Close()
	wait(lastRefs(), []proxy.Completion{{Rows: 2}})

	if _, err := conn.ExecContext(ctx, "USE `other`"); err != nil {
		t.Fatal(err)
	}
	var cur string
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&cur); err != nil || cur != "other" {
		t.Fatalf("after USE: %q, %v", cur, err)
	}
	h.audit.mu.Lock()
	schemas := append([]string(nil), h.audit.schemas...)
	logins := len(h.audit.logins)
	h.audit.mu.Unlock()
	if diff := cmp.Diff([]string{"app", "", "other"}, schemas); diff != "" {
		t.Errorf("default schemas (-want +got):\n%s", diff)
	}
	if logins != 1 {
		t.Errorf("%d logins recorded; want 1", logins)
	}
}
