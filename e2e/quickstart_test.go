package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQuickstart is the README's first command as a new user runs it: `gatehouse quickstart`, then
// `source DATA_DIR/quickstart.env && psql -c 'select 1'`, then Ctrl-C. psql goes through the sidecar
// with the access token as its password and lands in the throwaway PostgreSQL as the repository user.
func TestQuickstart(t *testing.T) {
	dataDir := t.TempDir()
	port := freeTCPPort(t)
	const adminPassword = "quickstart-Admin-pw1"

	start := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(Binary, "quickstart", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--sidecar-port", strconv.Itoa(port))
		cmd.Env = append(baseEnv(), "GATEHOUSE_ADMIN_PASSWORD="+adminPassword)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				out.Write([]byte(sc.Text() + "\n"))
				if strings.HasPrefix(sc.Text(), "gatehouse: quickstart ready") {
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("quickstart not ready after 90s\nstdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
		return cmd, stderr
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("quickstart exited with %v after Ctrl-C", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("quickstart did not stop within 30s of Ctrl-C")
		}
	}
	psql := func(sql string) (string, error) {
		c := exec.Command("bash", "-c", "source "+filepath.Join(dataDir, "quickstart.env")+" && psql -XAtc \"$0\"", sql)
		c.Env = baseEnv()
		for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE"} {
			c.Env = append(c.Env, k+"=") // the env file must supply them all
		}
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	cmd, stderr := start()
	info, err := os.Stat(filepath.Join(dataDir, "quickstart.env"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("quickstart.env mode = %v, want 0600 (it holds an access token)", info.Mode().Perm())
	}
	out, err := psql("select 1")
	if err != nil || out != "1" {
		t.Fatalf("psql select 1: %v\n%s\nquickstart stderr:\n%s", err, out, stderr.String())
	}
	out, err = psql("select current_user || ' ' || application_name from pg_stat_activity where pid = pg_backend_pid()")
	if err != nil || out != "quickstart_user psql (gatehouse:admin)" {
		t.Errorf("session identity = %q (%v), want the repository user with the real person in application_name", out, err)
	}
	env, _ := os.ReadFile(filepath.Join(dataDir, "quickstart.env"))
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "GATEHOUSE_SERVER"} {
		if !strings.Contains(string(env), "export "+k+"=") {
			t.Errorf("quickstart.env lacks %s:\n%s", k, env)
		}
	}
	stop(cmd)
	if _, err := psql("select 1"); err == nil {
		t.Error("psql still connects after quickstart stopped")
	}

	// A second run in the same data directory reuses the store and the sidecar's key.
	cmd, stderr = start()
	if out, err := psql("select 1"); err != nil || out != "1" {
		t.Fatalf("second run: psql select 1: %v\n%s\nquickstart stderr:\n%s", err, out, stderr.String())
	}
	stop(cmd)
}
