package rawio_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// pair returns both ends of a loopback TCP connection, the first one wrapped.
func pair(t testing.TB) (wrapped, peer net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w := rawio.WrapConn(c)
	t.Cleanup(func() { w.Close(); p.Close() })
	return w, p
}

func TestWrapConnOnlyWrapsTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawio.WrapConn(a); got != a {
		t.Fatalf("WrapConn(net.Pipe) = %T, want the pipe itself", got)
	}
	w, _ := pair(t)
	if _, ok := w.(*net.TCPConn); ok && runtime.GOOS == "linux" {
		t.Fatal("WrapConn(*net.TCPConn) returned it unwrapped on Linux")
	}
}

// Both directions at once, with writes far larger than the socket buffers, so that writes stop
// on EAGAIN half-way and carry on when the poller says the socket is writable again.
func TestBulkBothWays(t *testing.T) {
	w, p := pair(t)
	out := make([]byte, 8<<20)
	in := make([]byte, 8<<20)
	rand.Read(out)
	rand.Read(in)

	errc := make(chan error, 3)
	go func() { // the wrapped side writes
		n, err := w.Write(out)
		if err == nil && n != len(out) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	go func() { // the peer writes to the wrapped side
		_, err := p.Write(in)
		errc <- err
	}()
	gotAtPeer := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(out))
		_, err := io.ReadFull(p, b)
		errc <- err
		gotAtPeer <- b
	}()
	// The wrapped side reads in small pieces while its own write is blocked.
	var got bytes.Buffer
	buf := make([]byte, 3000)
	for got.Len() < len(in) {
		n, err := w.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got.Len(), err)
		}
		got.Write(buf[:n])
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), in) {
		t.Fatal("the wrapped side read different bytes than the peer wrote")
	}
	if !bytes.Equal(<-gotAtPeer, out) {
		t.Fatal("the peer read different bytes than the wrapped side wrote")
	}
}

func TestEOF(t *testing.T) {
	w, p := pair(t)
	p.Write([]byte("last"))
	p.Close()
	b, err := io.ReadAll(w)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil (io.EOF ends it)", b, err)
	}
	if n, err := w.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestReadDeadline(t *testing.T) {
	w, p := pair(t)
	w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := w.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %#v, want a net.Error whose Timeout() is true", err)
	}
	// Clearing the deadline lets reads go on.
	w.SetReadDeadline(time.Time{})
	p.Write([]byte("after"))
	b := make([]byte, 5)
	if _, err := io.ReadFull(w, b); err != nil || string(b) != "after" {
		t.Fatalf("Read after clearing the deadline = %q, %v; want \"after\"", b, err)
	}
}

func TestWriteDeadline(t *testing.T) {
	w, _ := pair(t) // the peer never reads
	w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := w.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline = %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write past the deadline reported %d bytes written, want what the socket buffers took", n)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	w, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	w.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
}

func TestResetIsAnOpError(t *testing.T) {
	w, p := pair(t)
	// Closing with unread data makes the kernel send a reset.
	w.Write([]byte("unread"))
	time.Sleep(20 * time.Millisecond)
	p.(*net.TCPConn).SetLinger(0)
	p.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := w.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset = %#v, want a *net.OpError for read", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset = %v, want ECONNRESET", err)
	}
}

// TLS on both ends, the server over a wrapped connection: what the sidecar does with clients.
func TestTLS(t *testing.T) {
	w, p := pair(t)
	cfg, _, err := proxy.SelfSignedTLS([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	server := tls.Server(w, cfg)
	client := tls.Client(p, &tls.Config{InsecureSkipVerify: true})
	msg := bytes.Repeat([]byte("select 1;"), 10000)
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(msg)
		if err == nil {
			err = client.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes through TLS, want the %d written", len(got), len(msg))
	}
}

func BenchmarkPingPong(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"net", false}, {"raw", true}} {
		b.Run(bc.name, func(b *testing.B) {
			w, p := pair(b)
			if !bc.wrap {
				w = w.(*rawio.Conn).TCPConn
			}
			go func() { io.Copy(p, p) }()
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(w, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
