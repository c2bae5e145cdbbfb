package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	drv "github.com/go-sql-driver/mysql"

	"github.com/gatehousedb/gatehouse/internal/mysqlpeer"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// TestMySQL8ThroughSidecar puts a MySQL 8 peer (go-mysql-server, 8.0.31, in this process) behind
// the real sidecar: repository "shop8" with tls_mode verify-full, repository user "app8" with
// caching_sha2_password, a listener port of version 8.0. go-sql-driver (text and prepared, TLS)
// and the mariadb CLI (--ssl) go through it; the sidecar logs in by the full path first and by the
// fast path once the peer has cached the password.
func TestMySQL8ThroughSidecar(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	peerTLS, _, err := proxy.SelfSignedTLS([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "peer-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: peerTLS.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	peer, err := mysqlpeer.Start(mysqlpeer.Config{TLS: peerTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	pw := "app8-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := peer.Exec(ctx, "CREATE DATABASE shop; CREATE TABLE shop.items (id int primary key, name varchar(20)); "+
		"INSERT INTO shop.items VALUES (1,'apple'),(2,'pear'); "+
		"CREATE USER 'app8'@'%' IDENTIFIED WITH caching_sha2_password BY '"+pw+"'; GRANT ALL ON shop.* TO 'app8'@'%'"); err != nil {
		t.Fatal(err)
	}

	cp := StartControlPlane(t, ServerOptions{})
	admin := cp.Admin(t)
	priv, pub := GenerateRSAKey(t, 2048)
	id := registerSidecar(t, admin, pub)
	port := freeTCPPort(t)
	admin.MustRun("repository", "create", "--name", "shop8", "--type", "mysql", "--version", "8.0",
		"--hostname", peer.Host(), "--port", strconv.Itoa(peer.Port()), "--database", "shop", "--tls-mode", "verify-full", "--ca-file", caFile)
	admin.MustRun("repository", "user", "create", "--repository", "shop8", "--username", "app8", "--secret-source", "env", "--env-name", "SHOP8_DB_PASSWORD")
	admin.MustRun("sidecar", "port", "create", id, "--port", strconv.Itoa(port), "--type", "mysql", "--version", "8.0")
	admin.MustRun("sidecar", "binding", "create", id, "--port", strconv.Itoa(port), "--repository", "shop8")
	admin.MustRunStdin("consumer-Passw0rd!\n", "user", "create", "alice@example.com", "--role", "DATA_CONSUMER", "--password-stdin")
	admin.MustRun("policy", "impersonation", "create", "--name", "alice-shop8", "--repository", "shop8",
		"--rule", "users=alice@example.com;repository_users=app8")
	alice := cp.NewCLI(t)
	alice.Login("alice@example.com", "consumer-Passw0rd!")
	sc := startSidecar(t, cp.URL, id, priv, []string{"SHOP8_DB_PASSWORD=" + pw})
	waitUntil(t, 10*time.Second, "mysql listener port open", func() bool { return listening("127.0.0.1", port) })
	var tok createdToken
	alice.MustRunJSON(&tok, "token", "create", "--ttl", "30m")
	addr := "127.0.0.1:" + strconv.Itoa(port)

	t.Run("greeting presents 8.0", func(t *testing.T) {
		if v := greetingVersion(t, addr); v != "8.0.0-gatehouse" {
			t.Errorf("listener port greets with version %q, want 8.0.0-gatehouse", v)
		}
	})

	t.Run("go-sql-driver text and prepared over TLS", func(t *testing.T) {
		c := drv.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.DBName = "app8", tok.Token, "tcp", addr, "shop"
		c.TLSConfig, c.Timeout = "skip-verify", 5*time.Second
		conn, err := drv.NewConnector(c)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		var name, version string
		if err := db.QueryRowContext(ctx, "SELECT name, @@version FROM items WHERE id = 1").Scan(&name, &version); err != nil || name != "apple" || version != mysqlpeer.Version {
			t.Fatalf("text query: %q %q, %v\nsidecar:\n%s", name, version, err, sc.out)
		}
		stmt, err := db.PrepareContext(ctx, "SELECT name FROM items WHERE id = ?")
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		if err := stmt.QueryRowContext(ctx, 2).Scan(&name); err != nil || name != "pear" {
			t.Fatalf("prepared query: %q, %v", name, err)
		}
	})

	t.Run("mariadb CLI", func(t *testing.T) {
		for range 2 {
			cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(port), "-u", "app8",
				"--ssl", "--batch", "--skip-column-names", "-e", "SELECT name FROM items ORDER BY id", "shop")
			cmd.Env = append(baseEnv(), "MYSQL_PWD="+tok.Token)
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != "apple\npear\n" {
				t.Fatalf("mariadb --ssl: %v\n%s", err, out)
			}
		}
	})

	full, fast := peer.Logins()
	t.Logf("the peer accepted %d full and %d fast caching_sha2_password logins", full, fast)
	if full != 1 || fast < 2 {
		t.Errorf("peer logins: %d full, %d fast; want the first full and the rest fast", full, fast)
	}
}

// greetingVersion reads the server version from the initial handshake at addr.
func greetingVersion(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	if len(p) < 2 || p[0] != 10 {
		t.Fatalf("not a protocol 10 handshake: % x", p)
	}
	v, _, _ := strings.Cut(string(p[1:]), "\x00")
	return v
}
