package e2e

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	drv "github.com/go-sql-driver/mysql"

	"github.com/gatehousedb/gatehouse/internal/mysqlserver"
)

// myFixture is a real MariaDB 10.11 behind a real sidecar: repository "shop" bound to a mysql
// listener port, repository user "app" whose password the sidecar reads from $SHOP_DB_PASSWORD,
// alice allowed to impersonate it, bob not.
type myFixture struct {
	cp    *ControlPlane
	admin *CLI
	alice *CLI
	bob   *CLI
	port  int
	db    *mysqlserver.Server
	sc    *sidecarProc
}

func newMySQLFixture(t *testing.T) *myFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := mysqlserver.Start(ctx, mysqlserver.Config{})
	if err != nil {
		t.Fatalf("start MariaDB: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Stop(); err != nil {
			t.Errorf("stop MariaDB: %v", err)
		}
	})
	pw := "app-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := db.Exec(ctx, "CREATE DATABASE shop; CREATE TABLE shop.items (id int primary key, name varchar(20)); "+
		"INSERT INTO shop.items VALUES (1,'apple'),(2,'pear'); "+
		"CREATE USER 'app'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('"+pw+"'); "+
		"GRANT ALL ON shop.* TO 'app'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	f := &myFixture{db: db}
	f.cp = StartControlPlane(t, ServerOptions{})
	f.admin = f.cp.Admin(t)
	priv, pub := GenerateRSAKey(t, 2048)
	id := registerSidecar(t, f.admin, pub)
	f.port = freeTCPPort(t)
	f.admin.MustRun("repository", "create", "--name", "shop", "--type", "mysql", "--version", "10.11",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(db.Port()), "--database", "shop", "--tls-mode", "disable")
	f.admin.MustRun("repository", "user", "create", "--repository", "shop", "--username", "app", "--secret-source", "env", "--env-name", "SHOP_DB_PASSWORD")
	f.admin.MustRun("sidecar", "port", "create", id, "--port", strconv.Itoa(f.port), "--type", "mysql", "--version", "10.11")
	f.admin.MustRun("sidecar", "binding", "create", id, "--port", strconv.Itoa(f.port), "--repository", "shop")
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		f.admin.MustRunStdin("consumer-Passw0rd!\n", "user", "create", u, "--role", "DATA_CONSUMER", "--password-stdin")
	}
	f.admin.MustRun("policy", "impersonation", "create", "--name", "alice-shop", "--repository", "shop",
		"--rule", "users=alice@example.com;repository_users=app")
	f.alice = f.cp.NewCLI(t)
	f.alice.Login("alice@example.com", "consumer-Passw0rd!")
	f.bob = f.cp.NewCLI(t)
	f.bob.Login("bob@example.com", "consumer-Passw0rd!")
	f.sc = startSidecar(t, f.cp.URL, id, priv, []string{"SHOP_DB_PASSWORD=" + pw})
	waitUntil(t, 10*time.Second, "mysql listener port open", func() bool { return listening("127.0.0.1", f.port) })
	return f
}

func (f *myFixture) token(t *testing.T, c *CLI) createdToken {
	t.Helper()
	var tok createdToken
	c.MustRunJSON(&tok, "token", "create", "--ttl", "30m")
	return tok
}

func (f *myFixture) addr() string { return "127.0.0.1:" + strconv.Itoa(f.port) }

// open is go-sql-driver/mysql through the sidecar with TLS (its self-signed certificate).
func (f *myFixture) open(t *testing.T, user, token string, tlsOn bool) *sql.DB {
	c := drv.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, token, "tcp", f.addr(), "shop"
	c.Timeout = 5 * time.Second
	c.TLSConfig = "skip-verify"
	if !tlsOn {
		c.TLSConfig = "false"
	}
	conn, err := drv.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

// mariadb runs the mariadb command-line client against the sidecar with MYSQL_PWD=token.
func (f *myFixture) mariadb(token string, args ...string) (string, error) {
	cmd := exec.Command("mariadb", append([]string{"--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(f.port), "--batch", "--skip-column-names"}, args...)...)
	cmd.Env = append(baseEnv(), "MYSQL_PWD="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMySQLThroughSidecar(t *testing.T) {
	t.Parallel()
	f := newMySQLFixture(t)
	tok := f.token(t, f.alice)
	ctx := context.Background()

	t.Run("go-sql-driver text and prepared over TLS", func(t *testing.T) {
		db := f.open(t, "app", tok.Token, true)
		var name string
		if err := db.QueryRowContext(ctx, "SELECT name FROM items WHERE id = 1").Scan(&name); err != nil || name != "apple" {
			t.Fatalf("text query: %q, %v", name, err)
		}
		stmt, err := db.PrepareContext(ctx, "SELECT name FROM items WHERE id = ?")
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		if err := stmt.QueryRowContext(ctx, 2).Scan(&name); err != nil || name != "pear" {
			t.Fatalf("prepared query: %q, %v", name, err)
		}
		var user string
		if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user); err != nil || user != "app@127.0.0.1" {
			t.Errorf("connected as %q, %v; want the repository user", user, err)
		}
	})

	t.Run("mariadb CLI", func(t *testing.T) {
		out, err := f.mariadb(tok.Token, "-u", "app@shop", "--ssl", "-e", "SELECT name FROM items ORDER BY id", "shop")
		if err != nil || out != "apple\npear\n" {
			t.Errorf("mariadb --ssl: %v\n%s", err, out)
		}
		out, err = f.mariadb(tok.Token, "-u", "app", "--skip-ssl", "-e", "SELECT 1")
		if err == nil || !strings.Contains(out, "ERROR 1045 (28000)") || !strings.Contains(out, "--ssl-mode=REQUIRED") {
			t.Errorf("mariadb without TLS: %v\n%s", err, out)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		bobTok := f.token(t, f.bob)
		cases := []struct {
			name, user, token string
			tlsOn             bool
			msg               string
		}{
			{"plaintext", "app", tok.Token, false, "only over TLS"},
			{"bad token", "app", "gh1_" + strings.Repeat("x", 43), true, "access token"},
			{"no impersonation rule", "app", bobTok.Token, true, "app"},
			{"unknown repository user", "nobody", tok.Token, true, "nobody"},
		}
		for _, tc := range cases {
			err := f.open(t, tc.user, tc.token, tc.tlsOn).PingContext(ctx)
			var me *drv.MySQLError
			if !errors.As(err, &me) || me.Number != 1045 || !strings.Contains(me.Message, tc.msg) {
				t.Errorf("%s: %v; want ERROR 1045 mentioning %q", tc.name, err, tc.msg)
			} else {
				t.Logf("%s: %s", tc.name, me.Message)
			}
		}
	})

	t.Run("killed query stops", func(t *testing.T) {
		withTLS := func(c *client.Conn) error { c.SetTLSConfig(&tls.Config{InsecureSkipVerify: true}); return nil }
		a, err := client.Connect(f.addr(), "app", tok.Token, "shop", withTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := a.Execute("SELECT SLEEP(60)")
			done <- err
		}()
		time.Sleep(500 * time.Millisecond)
		out, err := f.mariadb(tok.Token, "-u", "app", "--ssl", "-e", fmt.Sprintf("KILL QUERY %d", a.GetConnectionID()))
		if err != nil {
			t.Fatalf("KILL QUERY through the sidecar: %v\n%s", err, out)
		}
		select {
		case err := <-done:
			t.Logf("query ended %s after it started: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(15 * time.Second):
			t.Fatal("query still running 15s after KILL QUERY")
		}
	})

	t.Run("revoked token ends the live session", func(t *testing.T) {
		tok2 := f.token(t, f.alice)
		db := f.open(t, "app", tok2.Token, true)
		db.SetMaxOpenConns(1)
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		f.alice.MustRun("token", "revoke", tok2.ID)
		waitUntil(t, 20*time.Second, "live session of the revoked token ended", func() bool {
			var n int
			return conn.QueryRowContext(ctx, "SELECT 1").Scan(&n) != nil
		})
		if err := f.open(t, "app", tok2.Token, true).PingContext(ctx); err == nil {
			t.Error("revoked token still logs in")
		}
	})
	_ = os.Stderr
}
