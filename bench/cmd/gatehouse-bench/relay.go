package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// The go-relay target (make bench RELAY=1) is the floor of the sidecar's design: a Go program with
// one goroutine per direction, crypto/tls towards the client and plain TCP towards PostgreSQL, that
// does nothing but copy bytes — no authentication of its own (the client logs in to PostgreSQL
// through it), no message framing, no policy, no activity. What it costs per query is what any
// goroutine-per-connection Go proxy costs on the machine before doing any work of its own, so the
// table shows how much of the sidecar's cost is its work and how much the runtime's. Its sockets
// are wrapped with internal/rawio, as the sidecar's are.

// relayMain runs the relay: gatehouse-bench relay -listen ADDR -upstream ADDR -tls-cert F -tls-key F.
func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "PostgreSQL address (host:port)")
	certFile := fs.String("tls-cert", "", "TLS certificate (PEM)")
	keyFile := fs.String("tls-key", "", "TLS private key (PEM)")
	loop := fs.Bool("loop", false, "relay in epoll event loops after the handshake (the loop-relay target, looprelay_linux.go)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" || *certFile == "" || *keyFile == "" {
		return errors.New("relay: -upstream, -tls-cert and -tls-key are required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, func() { l.Close() })
	r := &relay{upstream: *upstream, tls: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	if *loop {
		if r.loop, err = newLoopRelay(); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	return r.serve(l)
}

type relay struct {
	upstream string
	tls      *tls.Config
	loop     *loopRelay // with -loop: connections are relayed by event loops after the handshake
}

func (r *relay) serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if r.loop != nil {
			go r.handleLoop(c)
		} else {
			go r.handle(c)
		}
	}
}

// sslRequest is the startup packet a client sends to ask for TLS: length 8, code 80877103.
var sslRequest = [8]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// handle answers the client's SSLRequest, takes the TLS handshake and then copies both ways until
// either side closes.
func (r *relay) handle(raw net.Conn) {
	defer raw.Close()
	client, up, err := r.open(raw, rawio.WrapConn(raw)) // wrapped as the sidecar's engines do
	if err != nil {
		return
	}
	up = rawio.WrapConn(up)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		copyConn(client, up)
		client.Close()
		up.Close()
		close(done)
	}()
	copyConn(up, client)
	client.Close()
	up.Close()
	<-done
}

// open answers the client's SSLRequest on raw, takes the TLS handshake over under (raw, wrapped)
// and dials PostgreSQL. Only TLS clients are served.
func (r *relay) open(raw, under net.Conn) (*tls.Conn, net.Conn, error) {
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	var req [8]byte
	if _, err := io.ReadFull(raw, req[:]); err != nil {
		return nil, nil, err
	}
	if req != sslRequest {
		return nil, nil, errors.New("relay: the client did not ask for TLS")
	}
	if _, err := raw.Write([]byte{'S'}); err != nil {
		return nil, nil, err
	}
	client := tls.Server(under, r.tls)
	if err := client.Handshake(); err != nil {
		return nil, nil, err
	}
	raw.SetDeadline(time.Time{})
	up, err := net.Dial("tcp", r.upstream)
	if err != nil {
		return nil, nil, err
	}
	return client, up, nil
}

// copyConn copies src to dst: one write per read, which is flushing whenever input drains.
func copyConn(dst io.Writer, src io.Reader) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
