package mysqlpeer_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/gatehousedb/gatehouse/internal/mysqlpeer"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCachingSha2 checks the peer with a client that is not ours: go-sql-driver logs in to a
// caching_sha2_password account over TLS, first by the full path, then by the fast path; a wrong
// password and plain TCP are refused.
func TestCachingSha2(t *testing.T) {
	serverTLS, _, err := proxy.SelfSignedTLS([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := mysqlpeer.Start(mysqlpeer.Config{TLS: serverTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Exec(ctx, "CREATE DATABASE app; CREATE USER 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'pw-1'; GRANT ALL ON app.* TO 'app'@'%'"); err != nil {
		t.Fatal(err)
	}
	login := func(password string, tlsOn bool) (string, error) {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.DBName = "app", password, "tcp", "127.0.0.1:"+strconv.Itoa(p.Port()), "app"
		if tlsOn {
			c.TLS = &tls.Config{InsecureSkipVerify: true}
		}
		conn, err := mysql.NewConnector(c)
		if err != nil {
			return "", err
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		var v string
		err = db.QueryRowContext(ctx, "SELECT @@version").Scan(&v)
		return v, err
	}
	for i := range 3 {
		v, err := login("pw-1", true)
		if err != nil || v != mysqlpeer.Version {
			t.Fatalf("login %d: version %q, %v", i, v, err)
		}
	}
	if full, fast := p.Logins(); full != 1 || fast != 2 {
		t.Errorf("logins: %d full, %d fast; want 1 full then 2 fast", full, fast)
	}
	var me *mysql.MySQLError
	if _, err := login("wrong", true); !errors.As(err, &me) || me.Number != 1045 {
		t.Errorf("wrong password: %v; want ERROR 1045", err)
	}
	if _, err := login("pw-1", false); err == nil {
		t.Error("caching_sha2_password login without TLS succeeded")
	}
}
