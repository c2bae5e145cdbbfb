package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"
)

// chunkReader returns what it reads from r in pieces of random size.
type chunkReader struct {
	r   io.Reader
	rnd *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1+c.rnd.IntN(len(p))]
	}
	return c.r.Read(p)
}

// randomStream is a stream of messages with random lengths, some longer than the buffers.
func randomStream(rnd *rand.Rand, n int) []byte {
	var b []byte
	for range n {
		size := rnd.IntN(300)
		switch rnd.IntN(10) {
		case 0:
			size = rnd.IntN(3 * bufferSize)
		case 1:
			size = idleReadSize - 5 + rnd.IntN(10)
		}
		b = append(b, byte('a'+rnd.IntN(26)))
		b = append(b, byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
		for range size {
			b = append(b, byte(rnd.Uint32()))
		}
	}
	return b
}

func TestConnWriter(t *testing.T) {
	pool := newBufferPool()
	rnd := rand.New(rand.NewPCG(1, 2))
	var out bytes.Buffer
	w := newConnWriter(&out, pool)
	var want []byte
	for i := range 500 {
		p := make([]byte, rnd.IntN(2*bufferSize))
		if i%7 == 0 {
			p = p[:rnd.IntN(10)]
		}
		for j := range p {
			p[j] = byte(rnd.Uint32())
		}
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v, want %d", n, err, len(p))
		}
		want = append(want, p...)
		if got := out.Len() + w.Buffered(); got != len(want) {
			t.Fatalf("written %d + buffered %d, want %d", out.Len(), w.Buffered(), len(want))
		}
		if rnd.IntN(3) == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if w.big != nil || w.Buffered() != 0 {
				t.Fatalf("after Flush the writer keeps a buffer (%d bytes buffered)", w.Buffered())
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("the bytes written out differ from the ones written")
	}
}

// failWriter takes n bytes, then fails.
type failWriter struct {
	n   int
	out bytes.Buffer
}

var errWriteFailed = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		f.out.Write(p[:f.n])
		k := f.n
		f.n = 0
		return k, errWriteFailed
	}
	f.n -= len(p)
	return f.out.Write(p)
}

func TestConnWriterKeepsBufferOnError(t *testing.T) {
	f := &failWriter{n: 3}
	w := newConnWriter(f, newBufferPool())
	w.Write([]byte("hello"))
	if err := w.Flush(); !errors.Is(err, errWriteFailed) {
		t.Fatalf("Flush = %v, want %v", err, errWriteFailed)
	}
	// What was not written is still in the buffer, which therefore may not go back to the pool.
	if w.big == nil || w.Buffered() != 2 || string(w.big[:w.n]) != "lo" {
		t.Fatalf("after a failed Flush: buffer %v, %d buffered", w.big != nil, w.Buffered())
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errWriteFailed) {
		t.Errorf("Write after a failure = %v", err)
	}
	w.Reset(io.Discard)
	if w.big != nil || w.Buffered() != 0 {
		t.Errorf("Reset keeps the buffer")
	}
}

func TestConnReader(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap func(io.Reader, *rand.Rand) io.Reader
	}{
		{"whole", func(r io.Reader, _ *rand.Rand) io.Reader { return r }},
		{"one byte", func(r io.Reader, _ *rand.Rand) io.Reader { return iotest.OneByteReader(r) }},
		{"random chunks", func(r io.Reader, rnd *rand.Rand) io.Reader { return &chunkReader{r, rnd} }},
		{"data with EOF", func(r io.Reader, _ *rand.Rand) io.Reader { return iotest.DataErrReader(r) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(3, 4))
			in := randomStream(rnd, 300)
			r := newConnReader(c.wrap(bytes.NewReader(in), rnd), newBufferPool())
			got, err := readStream(r, rnd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(in))
			}
			if _, err := r.Peek(1); err != io.EOF {
				t.Errorf("Peek at the end = %v, want EOF", err)
			}
			if r.big != nil {
				t.Errorf("drained reader keeps a borrowed buffer")
			}
		})
	}
}

// readStream reads messages from r as the relay does: a header by Peek, the body by Peek and
// Discard in chunks, by Read, or by Discard. Between messages it sometimes releases the reader's
// own buffer, as a parking session does.
func readStream(r *connReader, rnd *rand.Rand) ([]byte, error) {
	var out []byte
	for {
		if rnd.IntN(4) == 0 {
			r.release()
		}
		hdr, err := r.Peek(5)
		if err == io.EOF && len(hdr) == 0 {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("Peek(5) = %q, %v", hdr, err)
		}
		out = append(out, hdr...)
		n := int(hdr[1])<<24 | int(hdr[2])<<16 | int(hdr[3])<<8 | int(hdr[4])
		r.Discard(5)
		switch rnd.IntN(3) {
		case 0:
			for n > 0 {
				b, err := r.Peek(min(n, r.Size()))
				out = append(out, b...)
				r.Discard(len(b))
				n -= len(b)
				if err != nil && n > 0 {
					return nil, fmt.Errorf("Peek: %v", err)
				}
			}
		case 1:
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return nil, fmt.Errorf("ReadFull: %v", err)
			}
			out = append(out, body...)
		case 2:
			if r.Buffered() >= n {
				b, _ := r.Peek(n)
				out = append(out, b...)
				r.Discard(n)
				continue
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return nil, fmt.Errorf("ReadFull: %v", err)
			}
			out = append(out, body...)
		}
	}
}

// TestConnReaderRelease: release lets go of the reader's own buffer only when nothing is
// buffered, and the reader reads on after it.
func TestConnReaderRelease(t *testing.T) {
	r := newConnReader(iotest.OneByteReader(bytes.NewReader([]byte("abcdef"))), newBufferPool())
	if b, err := r.Peek(2); err != nil || string(b) != "ab" {
		t.Fatalf("Peek(2) = %q, %v", b, err)
	}
	r.release()
	if r.own == nil {
		t.Fatal("release dropped a buffer holding unread bytes")
	}
	r.Discard(2)
	r.release()
	if r.own != nil || r.buf != nil {
		t.Fatal("release kept the buffer of an empty reader")
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "cdef" {
		t.Fatalf("after release read %q, %v; want cdef", got, err)
	}
}

// Readers and writers of concurrent sessions share the engine's pool; each must see only its own
// bytes (and the race detector, no buffer used by two at once).
func TestBuffersSharedByConcurrentSessions(t *testing.T) {
	pool := newBufferPool()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 5))
			in := randomStream(rnd, 200)
			pr, pw := io.Pipe()
			go func() {
				w := newConnWriter(pw, pool)
				rest := in
				for len(rest) > 0 {
					k := min(len(rest), rnd.IntN(3*bufferSize))
					w.Write(rest[:k])
					rest = rest[k:]
					if rnd.IntN(2) == 0 {
						w.Flush()
					}
				}
				w.Flush()
				pw.Close()
			}()
			r := newConnReader(pr, pool)
			got, err := readStream(r, rand.New(rand.NewPCG(uint64(i), 6)))
			if err != nil {
				t.Errorf("session %d: %v", i, err)
				pr.CloseWithError(err)
			} else if !bytes.Equal(got, in) {
				t.Errorf("session %d: read %d bytes that differ from the %d written", i, len(got), len(in))
			}
		})
	}
	wg.Wait()
}

// BenchmarkRelaySmallResponse relays a select-only answer (RowDescription, DataRow,
// CommandComplete, ReadyForQuery) as upstreamToClient does, flushing after it: it must not
// allocate, and it reads once and writes once.
func BenchmarkRelaySmallResponse(b *testing.B) {
	var resp []byte
	for _, m := range []struct {
		typ  byte
		body string
	}{{'T', "\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"},
		{'D', "\x00\x01\x00\x00\x00\x011"}, {'C', "SELECT 1\x00"}, {'Z', "I"}} {
		resp = append(resp, m.typ, 0, 0, 0, byte(len(m.body)+4))
		resp = append(resp, m.body...)
	}
	pool := newBufferPool()
	src := bytes.NewReader(resp)
	cr := &countingReader{r: src}
	cw := &countingWriter{}
	r := newConnReader(cr, pool)
	w := newConnWriter(cw, pool)
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(resp)
		for range 4 {
			typ, n, err := readHeader(r, maxMessageLen)
			if err != nil {
				b.Fatal(err)
			}
			writeHeader(w, typ, n)
			if err := copyBody(w, r, n); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cr.reads)/float64(b.N), "reads/op")
	b.ReportMetric(float64(cw.writes)/float64(b.N), "writes/op")
}

type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

type countingWriter struct{ writes int }

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return len(p), nil }
