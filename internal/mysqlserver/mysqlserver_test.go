package mysqlserver_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gatehousedb/gatehouse/internal/mysqlserver"
)

func TestStartExecStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := mysqlserver.Start(ctx, mysqlserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := srv.Exec(ctx, "CREATE DATABASE app; CREATE TABLE app.t (n int); INSERT INTO app.t VALUES (41)"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", srv.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT n + 1 FROM t").Scan(&n); err != nil || n != 42 {
		t.Fatalf("query over TCP: %d, %v", n, err)
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("MariaDB %s on port %d", version, srv.Port())
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err == nil {
		t.Error("server still answers after Stop")
	}
}
