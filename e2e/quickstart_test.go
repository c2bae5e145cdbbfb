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
// A second run adds --mysql: the printed mariadb commands, and the one from quickstart.env, reach the
// throwaway MariaDB through the sidecar; a third run without --mysql closes that port again.
func TestQuickstart(t *testing.T) {
	dataDir := t.TempDir()
	port := freeTCPPort(t)
	const adminPassword = "quickstart-Admin-pw1"

	start := func(args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
		cmd := exec.Command(Binary, append([]string{"quickstart", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--sidecar-port", strconv.Itoa(port)}, args...)...)
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
		return cmd, out, stderr
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

	cmd, _, stderr := start()
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

	// A second run in the same data directory reuses the store and the sidecar's key; with --mysql
	// it also puts a throwaway MariaDB behind a second port.
	myPort := freeTCPPort(t)
	cmd, stdout, stderr := start("--mysql", "--mysql-port", strconv.Itoa(myPort))
	if out, err := psql("select 1"); err != nil || out != "1" {
		t.Fatalf("second run: psql select 1: %v\n%s\nquickstart stderr:\n%s", err, out, stderr.String())
	}
	// The two mariadb commands the quickstart printed, as printed, plus what to run.
	var printed []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if line = strings.TrimSpace(line); strings.Contains(line, "mariadb --ssl") || strings.HasPrefix(line, "MYSQL_PWD=") {
			printed = append(printed, line)
		}
	}
	if len(printed) != 2 {
		t.Fatalf("want two mariadb command lines in the quickstart's output:\n%s", stdout.String())
	}
	env, _ = os.ReadFile(filepath.Join(dataDir, "quickstart.env"))
	for _, command := range printed {
		c := exec.Command("bash", "-c", command+" --batch --skip-column-names -e 'select current_user(), database()'")
		c.Env = baseEnv()
		for _, k := range []string{"MYSQL_HOST", "MYSQL_TCP_PORT", "MYSQL_USER", "MYSQL_PWD", "MYSQL_DATABASE"} {
			c.Env = append(c.Env, k+"=") // the command line or the env file must supply them
			if !strings.Contains(string(env), "export "+k+"=") {
				t.Errorf("quickstart.env lacks %s:\n%s", k, env)
			}
		}
		out, err := c.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "quickstart_user@127.0.0.1\tquickstart" {
			t.Errorf("%s\n: %v\n%s\nquickstart stderr:\n%s", command, err, out, stderr.String())
		}
	}
	stop(cmd)

	// A third run without --mysql removes what the MySQL run registered: its port stays closed.
	cmd, _, stderr = start()
	if out, err := psql("select 1"); err != nil || out != "1" {
		t.Fatalf("third run: psql select 1: %v\n%s\nquickstart stderr:\n%s", err, out, stderr.String())
	}
	if listening("127.0.0.1", myPort) {
		t.Errorf("the sidecar still listens on the MySQL port %d of the earlier --mysql run", myPort)
	}
	if env, _ := os.ReadFile(filepath.Join(dataDir, "quickstart.env")); strings.Contains(string(env), "MYSQL_") {
		t.Errorf("quickstart.env of a run without --mysql sets MYSQL_ variables:\n%s", env)
	}
	stop(cmd)
}
