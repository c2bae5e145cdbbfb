package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// chain makes activity records as a sidecar's spool does: statement and statement.end pairs of one
// instance, sealed into its hash chain, encoded as the spool encodes them (json.Marshal gives the
// same bytes).
type chain struct {
	sidecar, instance string
	seq               uint64
	prev              string
	t                 time.Time
}

func newChain(sidecar, instance string) *chain {
	return &chain{sidecar: sidecar, instance: instance, t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
}

func (c *chain) seal(tb testing.TB, r *activity.Record) json.RawMessage {
	tb.Helper()
	c.seq++
	c.t = c.t.Add(1234567 * time.Nanosecond)
	r.Seq, r.Time, r.SidecarID, r.InstanceID, r.PrevHash, r.Hash = c.seq, c.t, c.sidecar, c.instance, c.prev, ""
	h, err := activity.ComputeHash(r)
	if err != nil {
		tb.Fatal(err)
	}
	r.Hash, c.prev = h, h
	raw, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// lines returns n records' lines (n/2 statements, each followed by its statement.end).
func (c *chain) lines(tb testing.TB, n int) []json.RawMessage {
	out := make([]json.RawMessage, 0, n)
	for len(out) < n {
		st := activity.Record{Type: activity.TypeStatement, SessionID: "KX4PMVQ7ZB2N5HRT6YW3JCAD8E",
			User: "alice@example.com", Repository: "sales", RepositoryUser: "reader",
			Statement:   fmt.Sprintf("SELECT c.id, c.name, c.email, o.total FROM public.customers c JOIN public.orders o ON o.customer_id = c.id WHERE c.id = %d", c.seq),
			Fingerprint: "9f3c2a61d0b47e85", Kind: "select",
			Objects:  []string{"public.customers", "public.customers.email", "public.customers.id", "public.customers.name", "public.orders", "public.orders.customer_id", "public.orders.total"},
			Decision: activity.DecisionAllow, Rule: "sales-ro#0", Mode: "enforce"}
		out = append(out, c.seal(tb, &st))
		if len(out) == n {
			break
		}
		end := activity.Record{Type: activity.TypeStatementEnd, SessionID: st.SessionID, Ref: st.Seq,
			User: st.User, Repository: st.Repository, RepositoryUser: st.RepositoryUser, Rows: 1, DurationMS: 0.734}
		out = append(out, c.seal(tb, &end))
	}
	return out
}

// shipper is a control plane with a registered sidecar, and that sidecar's client.
type shipper struct {
	srv    *Server
	client *syncapi.Client
	signer *syncapi.Signer
	chain  *chain
}

// startShipper starts a control plane on storeURL ("" for SQLite in a temporary directory) and
// registers a sidecar through the API.
func startShipper(tb testing.TB, storeURL string) *shipper {
	tb.Helper()
	cfg := Config{StoreURL: storeURL, AdminPassword: adminPassword, Listen: "127.0.0.1:0", Stdout: io.Discard,
		Logger: slog.New(slog.DiscardHandler)}
	if storeURL == "" {
		cfg.DataDir = tb.TempDir()
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	admin, err := srv.NewSession(context.Background(), "admin")
	if err != nil {
		tb.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	reg, _ := json.Marshal(map[string]string{"display_name": "east", "hostname": "sidecar.example.com",
		"public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	req, _ := http.NewRequest("POST", srv.URL()+"/api/v1/sidecars", bytes.NewReader(reg))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	var sc struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&sc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || sc.ID == "" {
		tb.Fatalf("register sidecar: %d %v", resp.StatusCode, err)
	}
	signer := &syncapi.Signer{Key: key, SidecarID: sc.ID, InstanceID: "inst1", Audience: srv.URL()}
	c, err := syncapi.NewClient(srv.URL(), signer, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.CloseIdleConnections)
	return &shipper{srv: srv, client: c, signer: signer, chain: newChain(sc.ID, "inst1")}
}

// BenchmarkShipActivity measures activity ingest end to end: a sidecar's 1,000-record batches
// posted over HTTP and stored. An op is one record; cpu-ns/op is the CPU time of this process
// (control plane and client; not the PostgreSQL server).
func BenchmarkShipActivity(b *testing.B) {
	const batch = 1000
	b.Run("sqlite", func(b *testing.B) { benchShip(b, "", batch) })
	b.Run("postgres", func(b *testing.B) {
		db := fmt.Sprintf("bench%d", pgDatabases.Add(1))
		if err := pg.Exec(context.Background(), "CREATE DATABASE "+db); err != nil {
			b.Fatal(err)
		}
		benchShip(b, pg.DSN(db), batch)
	})
}

func benchShip(b *testing.B, storeURL string, batch int) {
	s := startShipper(b, storeURL)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		lines := s.chain.lines(b, n)
		b.StartTimer()
		before := cpuTime()
		if err := s.client.ShipActivity(ctx, lines); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - before
		done += n
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
