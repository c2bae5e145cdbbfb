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
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// shipper is a control plane with a registered sidecar, and that sidecar's client.
type shipper struct {
	srv    *Server
	client *syncapi.Client
	signer *syncapi.Signer
	chain  *activitytest.Chain
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
	srv := runServer(tb, cfg)
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
	return &shipper{srv: srv, client: c, signer: signer, chain: activitytest.NewChain(sc.ID, "inst1")}
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
		lines := s.chain.Lines(b, n)
		b.StartTimer()
		before := activitytest.CPUTime()
		if err := s.client.ShipActivity(ctx, lines); err != nil {
			b.Fatal(err)
		}
		cpu += activitytest.CPUTime() - before
		done += n
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
