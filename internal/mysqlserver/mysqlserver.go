package mysqlserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Config says how to start a server. The zero value starts a server in a new temporary directory on
// a free loopback port with a random root password.
type Config struct {
	Dir      string            // parent directory for the data dir and socket; "" = os.MkdirTemp, removed by Stop
	Port     int               // 0 = pick a free loopback port
	Password string            // password of "root"; "" = random (see Server.Password)
	BinDir   string            // directory holding mariadbd; "" = /usr/sbin, then $PATH
	Settings map[string]string // extra mariadbd options without "--", e.g. "ssl_cert": path
	Logger   *slog.Logger      // nil = discard
}

// Server is a running MariaDB server started by Start.
type Server struct {
	port       int
	password   string
	dir        string
	dataDir    string
	socket     string
	logPath    string
	removeDirs []string
	cmd        *exec.Cmd
	exited     chan struct{}
	waitErr    error
	logger     *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// maxSocketPath keeps the socket path under the kernel's 107-byte limit.
const maxSocketPath = 100

// Start initialises a data directory (unless it already holds one) and starts mariadbd, and returns
// once root can log in over TCP with the password. ctx bounds the start-up only; the server runs
// until Stop.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "mysqlserver")
	mariadbd, installDB, err := findBinaries(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	s := &Server{password: cfg.Password, logger: logger, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			s.kill()
			s.cleanup()
		}
	}()
	s.dir = cfg.Dir
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "ghmy"); err != nil {
			return nil, fmt.Errorf("create server directory: %w", err)
		}
		s.removeDirs = append(s.removeDirs, s.dir)
	} else {
		if s.dir, err = filepath.Abs(s.dir); err != nil {
			return nil, fmt.Errorf("server directory: %w", err)
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, fmt.Errorf("create server directory: %w", err)
		}
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "mariadb.log")
	s.socket = filepath.Join(s.dir, "mysqld.sock")
	if len(s.socket) > maxSocketPath {
		sd, err := os.MkdirTemp("", "ghmys")
		if err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		s.removeDirs = append(s.removeDirs, sd)
		s.socket = filepath.Join(sd, "mysqld.sock")
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()

	initialized := fileExists(filepath.Join(s.dataDir, "mysql", "user.frm")) || fileExists(filepath.Join(s.dataDir, "mysql", "global_priv.frm"))
	if initialized && s.password == "" {
		return nil, fmt.Errorf("data directory %s is already initialised: Config.Password must be its root password", s.dataDir)
	}
	fresh := !initialized
	if s.password == "" {
		s.password = randomHex(16)
	}
	if fresh {
		if err := s.installDB(ctx, installDB, logFile); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		s.port = cfg.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = s.run(ctx, mariadbd, cfg.Settings, logFile, fresh)
		if err == nil {
			break
		}
		if cfg.Port != 0 || attempt == 2 || !errors.Is(err, errExited) || !strings.Contains(s.logTail(), "Address already in use") {
			return nil, err
		}
		s.exited = make(chan struct{})
	}
	if fresh {
		if err := s.setPassword(ctx); err != nil {
			return nil, err
		}
	}
	logger.Info("mariadb started", "port", s.port, "data_dir", s.dataDir)
	return s, nil
}

var errExited = errors.New("mariadbd exited")

func (s *Server) installDB(ctx context.Context, installDB string, logFile *os.File) error {
	args := []string{"--no-defaults", "--datadir=" + s.dataDir, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	cmd := exec.CommandContext(ctx, installDB, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb-install-db: %w\n%s", err, s.logTail())
	}
	return nil
}

func (s *Server) run(ctx context.Context, mariadbd string, extra map[string]string, logFile *os.File, fresh bool) error {
	opts := map[string]string{
		"datadir":                        s.dataDir,
		"port":                           strconv.Itoa(s.port),
		"bind-address":                   "127.0.0.1",
		"socket":                         s.socket,
		"pid-file":                       filepath.Join(s.dir, "mariadbd.pid"),
		"skip-name-resolve":              "",
		"innodb-buffer-pool-size":        "32M",
		"innodb-log-file-size":           "16M",
		"innodb-flush-log-at-trx-commit": "0",
		"sync-binlog":                    "0",
		"skip-log-bin":                   "",
		"max-connections":                "200",
		"character-set-server":           "utf8mb4",
		"collation-server":               "utf8mb4_general_ci",
	}
	for k, v := range extra {
		opts[k] = v
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"--no-defaults"}
	for _, k := range keys {
		if opts[k] == "" {
			args = append(args, "--"+k)
		} else {
			args = append(args, "--"+k+"="+opts[k])
		}
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	cmd := exec.Command(mariadbd, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	s.cmd = cmd
	exited := s.exited
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pw := s.password
	if fresh {
		pw = ""
	}
	var lastErr error
	for {
		if lastErr = s.ping(ctx, pw); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w (%v) before accepting connections\n%s", errExited, s.waitErr, s.logTail())
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("wait for mariadbd to accept connections: %w (last error: %v)\n%s", ctx.Err(), lastErr, s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) socketConfig(password string) *mysql.Config {
	c := mysql.NewConfig()
	c.User = "root"
	c.Passwd = password
	c.Net = "unix"
	c.Addr = s.socket
	c.Timeout = 5 * time.Second
	c.MultiStatements = true
	c.AllowNativePasswords = true
	return c
}

func (s *Server) ping(ctx context.Context, password string) error {
	conn, err := mysql.NewConnector(s.socketConfig(password))
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// setPassword gives root@localhost the password and creates root@127.0.0.1 with it, so that TCP
// clients (the sidecar) log in with mysql_native_password.
func (s *Server) setPassword(ctx context.Context) error {
	conn, err := mysql.NewConnector(s.socketConfig(""))
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	pw := strings.ReplaceAll(s.password, "'", "''")
	q := fmt.Sprintf("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '%s'; "+
		"GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; ALTER USER 'root'@'localhost' IDENTIFIED BY '%s'", pw, pw)
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("set root password: %w", err)
	}
	return nil
}

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Host returns the address the server listens on: always "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// Password returns the password of "root".
func (s *Server) Password() string { return s.password }

// Socket returns the server's Unix socket path.
func (s *Server) Socket() string { return s.socket }

// DataDir returns the data directory.
func (s *Server) DataDir() string { return s.dataDir }

// LogPath returns the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// DSN returns a go-sql-driver/mysql data source name to connect to database as root over TCP
// without TLS.
func (s *Server) DSN(database string) string {
	c := mysql.NewConfig()
	c.User = "root"
	c.Passwd = s.password
	c.Net = "tcp"
	c.Addr = net.JoinHostPort(s.Host(), strconv.Itoa(s.port))
	c.DBName = database
	c.AllowNativePasswords = true
	return c.FormatDSN()
}

// Exec runs sql as root over the Unix socket. Several statements separated by ';' are allowed.
func (s *Server) Exec(ctx context.Context, sqlText string) error {
	conn, err := mysql.NewConnector(s.socketConfig(s.password))
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if _, err := db.ExecContext(ctx, sqlText); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// Stop shuts the server down (SIGTERM: a normal shutdown), waits for it to exit and removes the
// directories Start created. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.shutdown()
		s.cleanup()
		if s.stopErr == nil {
			s.logger.Info("mariadb stopped", "port", s.port)
		}
	})
	return s.stopErr
}

func (s *Server) shutdown() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal mariadbd: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	s.kill()
	return errors.New("mariadbd did not stop within 30s; killed it")
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func (s *Server) cleanup() {
	for i := len(s.removeDirs) - 1; i >= 0; i-- {
		_ = os.RemoveAll(s.removeDirs[i])
	}
	s.removeDirs = nil
}

func (s *Server) logTail() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 4096
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return ""
	}
	return "server log " + s.logPath + ":\n" + string(b)
}

func findBinaries(dir string) (mariadbd, installDB string, err error) {
	const hint = "install MariaDB: apt-get install mariadb-server mariadb-client"
	look := func(name string, dirs ...string) string {
		for _, d := range dirs {
			if d != "" && fileExists(filepath.Join(d, name)) {
				return filepath.Join(d, name)
			}
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		return ""
	}
	if mariadbd = look("mariadbd", dir, "/usr/sbin"); mariadbd == "" {
		return "", "", fmt.Errorf("mariadbd not found (looked in %q, /usr/sbin and $PATH); %s", dir, hint)
	}
	if installDB = look("mariadb-install-db", dir, "/usr/bin", filepath.Dir(mariadbd)); installDB == "" {
		return "", "", fmt.Errorf("mariadb-install-db not found; %s", hint)
	}
	return mariadbd, installDB, nil
}

// childEnv is our environment without MYSQL_* variables that could point the tools elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MYSQL_") || strings.HasPrefix(kv, "MARIADB_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
