package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSidecarDrain: on SIGTERM the sidecar stops accepting at once, lets a running statement finish,
// and ends sessions still open at the drain deadline with "server is shutting down".
func TestSidecarDrain(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	p := f.startSidecar(t, f.priv, "--drain-timeout", "3s")
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	tok := f.token(t)

	ctx := context.Background()
	busy, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	idle, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)

	done := make(chan error, 1)
	go func() {
		var n int
		done <- busy.QueryRow(ctx, "SELECT 7 FROM pg_sleep(1.5)").Scan(&n)
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)

	waitUntil(t, 2*time.Second, "listener closed after SIGTERM", func() bool { return !listening("127.0.0.1", f.port) })
	if err := <-done; err != nil {
		t.Fatalf("statement running at SIGTERM did not finish: %v", err)
	}
	var n int
	if err := idle.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("open session refused a statement during the drain: %v", err)
	}

	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sidecar did not exit after the drain deadline:\n%s", p.out)
	}
	if took := time.Since(stopped); took < 2500*time.Millisecond {
		t.Errorf("sidecar exited %s after SIGTERM, before the 3s drain deadline, with sessions open", took)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sidecar exited %d after SIGTERM:\n%s", code, p.out)
	}
	err = idle.QueryRow(ctx, "SELECT 1").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "shutting down") && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "EOF") {
		t.Errorf("session open past the deadline: err = %v, want it ended", err)
	}
}
