package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

// TestRelay runs go-relay and loop-relay between pgx and a real PostgreSQL: the client logs in
// through each with TLS, large messages cross both ways (more than a socket takes at once), and a
// client that does not ask for TLS is turned away.
func TestRelay(t *testing.T) {
	t.Run("go-relay", func(t *testing.T) { testRelay(t, false) })
	t.Run("loop-relay", func(t *testing.T) { testRelay(t, true) })
}

func testRelay(t *testing.T, loop bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	defer pg.Stop()

	certFile, keyFile, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{upstream: fmt.Sprintf("127.0.0.1:%d", pg.Port()), tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	if loop {
		if r.loop, err = newLoopRelay(); err != nil {
			t.Fatal(err)
		}
	}
	served := make(chan error, 1)
	go func() { served <- r.serve(l) }()
	port := l.Addr().(*net.TCPAddr).Port

	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=require", port, pg.Password()))
	if err != nil {
		t.Fatalf("connect through the relay: %v", err)
	}
	var ssl bool
	var sum int
	if err := conn.QueryRow(ctx, "SELECT ssl, (SELECT sum(g) FROM generate_series(1, 100) g) FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &sum); err != nil {
		t.Fatalf("query through the relay: %v", err)
	}
	// The relay ends TLS: PostgreSQL sees a plain connection, as it does from PgBouncer.
	if ssl || sum != 5050 {
		t.Errorf("ssl=%v sum=%d, want false and 5050", ssl, sum)
	}

	// 8 MB to PostgreSQL in one message, then 20 MB back in 20,000 rows.
	big := strings.Repeat("ab", 4<<20)
	var n int
	if err := conn.QueryRow(ctx, "SELECT length($1::text)", big).Scan(&n); err != nil || n != len(big) {
		t.Fatalf("large parameter through the relay: length %d, %v; want %d", n, err, len(big))
	}
	rows, err := conn.Query(ctx, "SELECT repeat('x', 1000) || g FROM generate_series(1, 20000) g")
	if err != nil {
		t.Fatal(err)
	}
	total, count := 0, 0
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		total += len(v)
		count++
	}
	if err := rows.Err(); err != nil || count != 20000 || total != 20000*1000+88894 {
		t.Fatalf("large result through the relay: %d rows, %d bytes, %v; want 20000 rows, %d bytes", count, total, err, 20000*1000+88894)
	}
	conn.Close(ctx)

	if c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=5", port, pg.Password())); err == nil {
		c.Close(ctx)
		t.Error("a client without TLS got through")
	}

	l.Close()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}
