package mysql_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/mysqlpeer"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql"
)

// TestMySQL8CachingSha2 logs the engine in to a MySQL 8 peer (go-mysql-server, 8.0.31) as a
// caching_sha2_password account over verified TLS: the first session takes the full path (the
// password inside TLS), later ones the fast path (the scramble matches the peer's cache). The
// client is go-sql-driver, text and prepared.
func TestMySQL8CachingSha2(t *testing.T) {
	certFile, keyFile, ca, err := writeServerCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := mysqlpeer.Start(mysqlpeer.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pw := randomHex(12)
	if err := peer.Exec(ctx, "CREATE DATABASE app; CREATE TABLE app.t (id int primary key, name varchar(20)); "+
		"INSERT INTO app.t VALUES (1,'one'),(2,'two'); "+
		"CREATE USER 'app8'@'%' IDENTIFIED WITH caching_sha2_password BY '"+pw+"'; GRANT ALL ON app.* TO 'app8'@'%'"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envName("app8"), pw)

	h := startEngine(t, func(c *mysql.Config) { c.Version = "8.0" })
	h.auth.add("tok-8", &proxy.Grant{
		Identity: proxy.Identity{User: "alice@example.com", TokenID: "tok8", TokenExpiresAt: time.Now().Add(time.Hour)},
		Target: proxy.Target{
			Repository: gatehouse.Repository{Name: "app8", Type: gatehouse.MySQL, Version: "8.0", Hostname: peer.Host(),
				Port: peer.Port(), Database: "app", TLSMode: gatehouse.TLSVerifyFull, CABundle: ca},
			User: repoUser("app8"),
		},
	})
	for i := range 3 {
		// A new pool each time: each session is a new login to the peer.
		db := open(t, h.addr, "app8", "tok-8", nil)
		db.SetMaxOpenConns(1)
		var name, version string
		if err := db.QueryRowContext(ctx, "SELECT name, @@version FROM t WHERE id = 1").Scan(&name, &version); err != nil || name != "one" || version != mysqlpeer.Version {
			t.Fatalf("session %d, text query: %q %q, %v", i, name, version, err)
		}
		if err := db.QueryRowContext(ctx, "SELECT name FROM t WHERE id = ?", 2).Scan(&name); err != nil || name != "two" {
			t.Fatalf("session %d, prepared query: %q, %v", i, name, err)
		}
		db.Close()
		full, fast := peer.Logins()
		if full != 1 || fast != i {
			t.Fatalf("after session %d the peer saw %d full and %d fast logins; want 1 full, then fast", i, full, fast)
		}
	}
	// A rotated password: the cached entry no longer matches, the old credential is refused, and
	// the engine fetches the credential again (full path with the new one).
	pw2 := randomHex(12)
	if err := peer.Exec(ctx, "ALTER USER 'app8'@'%' IDENTIFIED WITH caching_sha2_password BY '"+pw2+"'"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envName("app8"), pw2)
	db := open(t, h.addr, "app8", "tok-8", nil)
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if full, _ := peer.Logins(); full != 2 {
		t.Errorf("after rotation the peer saw %d full logins; want 2", full)
	}
}
