package syncapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// shipTestClient returns a client of srv.
func shipTestClient(t *testing.T, srv *httptest.Server) *Client {
	t.Helper()
	key, err := LoadPrivateKey("testdata/openssl_pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(srv.URL, &Signer{Key: key, SidecarID: "sc1", InstanceID: "inst", Audience: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// batchOf returns n records of about size bytes each, tagged with batch.
func batchOf(batch string, n, size int) []json.RawMessage {
	recs := make([]json.RawMessage, n)
	for i := range recs {
		recs[i] = json.RawMessage(fmt.Sprintf(`{"batch":%q,"seq":%d,"pad":%q}`, batch, i+1, strings.Repeat("x", size)))
	}
	return recs
}

// TestShipActivityReusesBody: batches of different sizes, one after the other, each arrive as
// they were given although their bodies are built in one buffer, which is kept for the next batch
// unless it is much larger than the last one needed.
func TestShipActivityReusesBody(t *testing.T) {
	var mu sync.Mutex
	var got []ActivityBatch
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b ActivityBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	c := shipTestClient(t, srv)
	batches := [][]json.RawMessage{batchOf("a", 50, 200), batchOf("b", 40, 200), batchOf("c", 3, 10), batchOf("d", 2000, 100), batchOf("e", 1, 10)}
	var buf0 *byte
	for i, b := range batches {
		if err := c.ShipActivity(context.Background(), b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		switch i {
		case 0:
			buf0 = &c.shipBuf[:1][0]
		case 1:
			if &c.shipBuf[:1][0] != buf0 {
				t.Error("the second batch's body was not built in the first one's buffer")
			}
		case 4:
			if c.shipBuf != nil {
				t.Errorf("a %d-byte buffer was kept after a batch of one record", cap(c.shipBuf))
			}
		}
	}
	if len(got) != len(batches) {
		t.Fatalf("the server got %d batches, want %d", len(got), len(batches))
	}
	for i, b := range batches {
		if len(got[i].Records) != len(b) {
			t.Fatalf("batch %d: %d records, want %d", i, len(got[i].Records), len(b))
		}
		for j := range b {
			if !bytes.Equal(got[i].Records[j], b[j]) {
				t.Fatalf("batch %d record %d: got %s, want %s", i, j, got[i].Records[j], b[j])
			}
		}
	}
}

// TestShipActivityAnsweredEarly: a control plane that answers before it has read a batch fails
// that batch, and the next batch, built in the same buffer while the transport may still be
// sending the first, arrives intact (the race detector watches the buffer).
func TestShipActivityAnsweredEarly(t *testing.T) {
	var mu sync.Mutex
	var got []ActivityBatch
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			http.Error(w, "too busy", http.StatusServiceUnavailable) // without reading the body
			return
		}
		var b ActivityBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	defer srv.Close()
	c := shipTestClient(t, srv)
	for i := range 5 {
		big := batchOf(fmt.Sprint("big", i), 4000, 1000)
		var se *StatusError
		if err := c.ShipActivity(context.Background(), big); !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a batch the server did not read: %v, want a 503 StatusError", err)
		}
		small := batchOf(fmt.Sprint("small", i), 100, 1000)
		if err := c.ShipActivity(context.Background(), small); err != nil {
			t.Fatalf("the batch after: %v", err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		for j := range small {
			if !bytes.Equal(last.Records[j], small[j]) {
				t.Fatalf("round %d record %d: got %.60s, want %.60s", i, j, last.Records[j], small[j])
			}
		}
	}
}

// TestReusedBodyReleased: a body read after its request ended gives an error, not the buffer's
// next contents.
func TestReusedBodyReleased(t *testing.T) {
	rb := &reusedBody{b: []byte(`{"records":[{}]}`)}
	r := rb.reader()
	p := make([]byte, 4)
	if n, err := r.Read(p); n != 4 || err != nil {
		t.Fatalf("Read before release: %d, %v", n, err)
	}
	rb.release()
	if n, err := r.Read(p); n != 0 || !errors.Is(err, errBodyReleased) {
		t.Fatalf("Read after release: %d, %v; want 0, errBodyReleased", n, err)
	}
	if _, err := io.ReadAll(rb.reader()); !errors.Is(err, errBodyReleased) {
		t.Fatalf("a new reader after release: %v", err)
	}
}

// TestShipBufferLetGoWhenIdle: the buffer of the last batch is let go once no batch has followed
// for a while, so a sidecar that went quiet does not hold it.
func TestShipBufferLetGoWhenIdle(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	c := shipTestClient(t, srv)
	if err := c.ShipActivity(context.Background(), batchOf("a", 100, 100)); err != nil {
		t.Fatal(err)
	}
	kept := func() bool {
		c.shipMu.Lock()
		defer c.shipMu.Unlock()
		return c.shipBuf != nil
	}
	if !kept() {
		t.Fatal("the buffer was not kept for the next batch")
	}
	deadline := time.Now().Add(shipBufferIdle + 5*time.Second)
	for kept() {
		if time.Now().After(deadline) {
			t.Fatalf("the buffer was still kept %v after the last batch", shipBufferIdle+5*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
