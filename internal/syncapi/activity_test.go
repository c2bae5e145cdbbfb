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
	"testing/iotest"
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

// batchIn returns n records of about size bytes each, tagged with batch, built in buf's array (as
// the shipper's lines are in its read buffer), and buf grown.
func batchIn(buf []byte, batch string, n, size int) ([]json.RawMessage, []byte) {
	buf = buf[:0]
	ends := make([]int, n)
	for i := range n {
		buf = fmt.Appendf(buf, `{"batch":%q,"seq":%d,"pad":%q}`, batch, i+1, strings.Repeat("x", size))
		ends[i] = len(buf)
	}
	recs := make([]json.RawMessage, n)
	from := 0
	for i, end := range ends {
		recs[i] = buf[from:end:end]
		from = end
	}
	return recs, buf
}

// TestShipActivityBody: batches of different sizes, read by the transport out of the records
// themselves, arrive byte for byte as ActivityBody builds them.
func TestShipActivityBody(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || int64(len(b)) != r.ContentLength {
			http.Error(w, fmt.Sprintf("%d bytes of %d: %v", len(b), r.ContentLength, err), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	defer srv.Close()
	c := shipTestClient(t, srv)
	var buf []byte
	for i, size := range [][2]int{{50, 200}, {0, 0}, {1, 10}, {2000, 100}, {3, 0}} {
		var recs []json.RawMessage
		recs, buf = batchIn(buf, fmt.Sprint("b", i), size[0], size[1])
		want, err := ActivityBody(recs)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ShipActivity(context.Background(), recs); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if !bytes.Equal(last, want) {
			t.Fatalf("batch %d: the server got %.80s..., want %.80s...", i, last, want)
		}
		var b ActivityBatch
		if err := json.Unmarshal(last, &b); err != nil || len(b.Records) != len(recs) {
			t.Fatalf("batch %d: %d records, %v", i, len(b.Records), err)
		}
	}
	if err := c.ShipActivity(context.Background(), []json.RawMessage{[]byte(`{}`), nil}); err == nil {
		t.Error("a batch with an empty record was sent")
	}
}

// TestBatchReaderPieces: the body reads the same whichever size the reads are.
func TestBatchReaderPieces(t *testing.T) {
	recs, _ := batchIn(nil, "p", 7, 5)
	want, _ := ActivityBody(recs)
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
		iotest.DataErrReader,
	} {
		body := &batchBody{records: recs}
		got, err := io.ReadAll(wrap(body.reader()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("got %q, %v; want %q", got, err, want)
		}
	}
	if err := iotest.TestReader((&batchBody{records: recs}).reader(), want); err != nil {
		t.Error(err)
	}
}

// TestShipActivityAnsweredEarly: a control plane that answers before it has read a batch fails
// that batch, and the next batch, whose records are built in the same buffer while the transport
// may still be sending the first, arrives intact (the race detector watches the buffer).
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
	var buf []byte
	for i := range 5 {
		var big, small []json.RawMessage
		big, buf = batchIn(buf, fmt.Sprint("big", i), 4000, 1000)
		var se *StatusError
		if err := c.ShipActivity(context.Background(), big); !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a batch the server did not read: %v, want a 503 StatusError", err)
		}
		small, buf = batchIn(buf, fmt.Sprint("small", i), 100, 1000)
		want := make([]string, len(small))
		for j, r := range small {
			want[j] = string(r)
		}
		if err := c.ShipActivity(context.Background(), small); err != nil {
			t.Fatalf("the batch after: %v", err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		for j := range want {
			if string(last.Records[j]) != want[j] {
				t.Fatalf("round %d record %d: got %.60s, want %.60s", i, j, last.Records[j], want[j])
			}
		}
	}
}

// TestBatchBodyReleased: a body read after its request ended gives an error, not what the
// records' buffer holds by then.
func TestBatchBodyReleased(t *testing.T) {
	body := &batchBody{records: []json.RawMessage{[]byte(`{}`)}}
	r := body.reader()
	p := make([]byte, 4)
	if n, err := r.Read(p); n != 4 || err != nil {
		t.Fatalf("Read before release: %d, %v", n, err)
	}
	body.release()
	if n, err := r.Read(p); n != 0 || !errors.Is(err, errBodyReleased) {
		t.Fatalf("Read after release: %d, %v; want 0, errBodyReleased", n, err)
	}
	if _, err := io.ReadAll(body.reader()); !errors.Is(err, errBodyReleased) {
		t.Fatalf("a new reader after release: %v", err)
	}
}
