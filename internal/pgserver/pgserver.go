package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config says how to start a server. The zero value starts a server in a new temporary directory on
// a free loopback port with a random password.
type Config struct {
	Dir      string            // parent directory for the data dir and socket; "" = os.MkdirTemp, removed by Stop
	Port     int               // 0 = pick a free loopback port
	Password string            // password of superuser "postgres"; "" = random (see Server.Password)
	BinDir   string            // "" = newest /usr/lib/postgresql/*/bin
	HBA      []string          // pg_hba.conf lines to use instead of the default ("host all all 127.0.0.1/32 scram-sha-256" and ::1)
	Settings map[string]string // extra postgresql.conf settings, e.g. "ssl":"on","ssl_cert_file":...
	Logger   *slog.Logger      // nil = discard
}

// Server is a running PostgreSQL server started by Start.
type Server struct {
	port       int
	password   string
	dir        string
	dataDir    string
	socketDir  string
	logPath    string
	removeDirs []string // directories Start created and Stop removes
	cmd        *exec.Cmd
	exited     chan struct{} // closed when the postmaster exits
	waitErr    error         // set before exited is closed
	logger     *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// defaultHBA is used when Config.HBA is empty.
var defaultHBA = []string{
	"host all all 127.0.0.1/32 scram-sha-256",
	"host all all ::1/128 scram-sha-256",
}

// maxSocketDir keeps DIR/.s.PGSQL.NNNNN under the kernel's 107-byte limit for Unix socket paths.
const maxSocketDir = 90

// Start runs initdb (unless the data directory already holds a cluster) and starts the server, and
// returns once it accepts connections. ctx bounds the start-up only; the server runs until Stop.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "pgserver")

	binDir, err := findBinDir(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}

	s := &Server{password: cfg.Password, logger: logger, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			s.cleanup()
		}
	}()

	s.dir = cfg.Dir
	if s.dir == "" {
		s.dir, err = os.MkdirTemp("", "ghpg")
		if err != nil {
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
	if cred != nil {
		if err := makeSearchable(s.dir, cred); err != nil {
			return nil, err
		}
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "postgres.log")

	s.socketDir = filepath.Join(s.dir, "s")
	if len(s.socketDir) > maxSocketDir {
		if s.socketDir, err = os.MkdirTemp("", "ghpgs"); err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		s.removeDirs = append(s.removeDirs, s.socketDir)
	} else if err := os.MkdirAll(s.socketDir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := chownTo(s.socketDir, cred); err != nil {
		return nil, err
	}

	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()

	initialized := fileExists(filepath.Join(s.dataDir, "PG_VERSION"))
	if initialized && s.password == "" {
		return nil, fmt.Errorf("data directory %s already holds a cluster: Config.Password must be its postgres password", s.dataDir)
	}
	if s.password == "" {
		s.password = randomHex(16)
	}
	if !initialized {
		if err := s.initdb(ctx, binDir, cred, logFile); err != nil {
			return nil, err
		}
	}
	if err := s.writeHBA(cfg.HBA, cred); err != nil {
		return nil, err
	}

	// A free port picked here can be taken by someone else before the postmaster binds it; try again.
	for attempt := 0; ; attempt++ {
		s.port = cfg.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		if err := s.writeSettings(cfg.Settings, cred); err != nil {
			return nil, err
		}
		err = s.run(ctx, binDir, cred, logFile)
		if err == nil {
			break
		}
		if cfg.Port != 0 || attempt == 2 || !errors.Is(err, errExited) || !strings.Contains(s.logTail(), "could not bind") {
			return nil, err
		}
		s.exited = make(chan struct{})
	}
	logger.Info("postgresql started", "port", s.port, "data_dir", s.dataDir)
	return s, nil
}

var errExited = errors.New("postgres exited")

func (s *Server) initdb(ctx context.Context, binDir string, cred *syscall.Credential, logFile *os.File) error {
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := chownTo(s.dataDir, cred); err != nil {
		return err
	}
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	defer os.Remove(pwfile)
	if err := chownTo(pwfile, cred); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", s.dataDir,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--username=postgres", "--pwfile="+pwfile,
		"--encoding=UTF8", "--no-locale", "--no-sync")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, s.logTail())
	}
	conf := filepath.Join(s.dataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString("\n# Written by gatehouse pgserver: settings chosen at each start.\ninclude_if_exists = 'gatehouse.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

func (s *Server) writeHBA(lines []string, cred *syscall.Credential) error {
	if len(lines) == 0 {
		lines = defaultHBA
	}
	var b strings.Builder
	b.WriteString("# Written by gatehouse pgserver. The local line lets Server.Exec and Server.Reload connect.\n")
	b.WriteString("local all all trust\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\n")
	}
	return writeOwned(filepath.Join(s.dataDir, "pg_hba.conf"), b.String(), cred)
}

func (s *Server) writeSettings(extra map[string]string, cred *syscall.Credential) error {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(s.port),
		"unix_socket_directories": s.socketDir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"logging_collector":       "off",
		"max_connections":         "100",
	}
	for k, v := range extra {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by gatehouse pgserver at each start.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	return writeOwned(filepath.Join(s.dataDir, "gatehouse.conf"), b.String(), cred)
}

// run starts the postmaster and waits until it accepts connections.
func (s *Server) run(ctx context.Context, binDir string, cred *syscall.Credential, logFile *os.File) error {
	cmd := exec.Command(filepath.Join(binDir, "postgres"), "-D", s.dataDir)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv()
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster stops its children and exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var lastErr error
	for {
		if lastErr = s.ping(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%w (%v) before accepting connections\n%s", errExited, s.waitErr, s.logTail())
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("wait for postgres to accept connections: %w (last error: %v)\n%s", ctx.Err(), lastErr, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.socketConnString())
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// socketConnString connects over the Unix socket, which pg_hba.conf always trusts.
func (s *Server) socketConnString() string {
	return fmt.Sprintf("host='%s' port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5",
		strings.ReplaceAll(s.socketDir, "'", `\'`), s.port)
}

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Host returns the address the server listens on: always "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// Password returns the password of the superuser "postgres".
func (s *Server) Password() string { return s.password }

// DataDir returns the data directory (where pg_hba.conf lives).
func (s *Server) DataDir() string { return s.dataDir }

// SocketDir returns the directory holding the server's Unix socket.
func (s *Server) SocketDir() string { return s.socketDir }

// LogPath returns the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// DSN returns a URL to connect to database as "postgres" over TCP without TLS.
func (s *Server) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", s.password),
		Host:     net.JoinHostPort(s.Host(), strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Exec runs sql as "postgres" on database "postgres", over the Unix socket. Several statements
// separated by ';' run as one implicit transaction, so statements that refuse a transaction block
// (CREATE DATABASE, ALTER SYSTEM) need a call of their own.
func (s *Server) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.socketConnString())
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// Reload makes the server re-read its configuration files (pg_hba.conf, postgresql.conf), like
// pg_ctl reload, and waits until it has done so.
func (s *Server) Reload(ctx context.Context) error {
	before, err := s.confLoadTime(ctx)
	if err != nil {
		return err
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal postgres: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		after, err := s.confLoadTime(ctx)
		if err == nil && after.After(before) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres to reload its configuration: %w\n%s", ctx.Err(), s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// confLoadTime asks a new backend when the configuration was last loaded; a backend inherits the
// postmaster's value when it is forked, so this advances once the postmaster has reloaded.
func (s *Server) confLoadTime(ctx context.Context) (time.Time, error) {
	conn, err := pgx.Connect(ctx, s.socketConnString())
	if err != nil {
		return time.Time{}, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(ctx)
	var t time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("query pg_conf_load_time: %w", err)
	}
	return t, nil
}

// Stop shuts the server down (fast shutdown: open sessions are ended), waits for it to exit and
// removes the directories Start created. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.shutdown()
		s.cleanup()
		if s.stopErr == nil {
			s.logger.Info("postgresql stopped", "port", s.port)
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
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postgres: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	s.kill()
	return fmt.Errorf("postgres did not stop within 30s; killed it")
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *Server) cleanup() {
	for i := len(s.removeDirs) - 1; i >= 0; i-- {
		_ = os.RemoveAll(s.removeDirs[i])
	}
	s.removeDirs = nil
}

// logTail returns the end of the server log, for error messages.
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

// findBinDir returns dir, or the newest /usr/lib/postgresql/N/bin, after checking it has the server
// binaries.
func findBinDir(dir string) (string, error) {
	const hint = "install postgresql: apt-get install postgresql"
	if dir == "" {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		best := -1.0
		for _, m := range matches {
			v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(m)), 64)
			if err != nil || v <= best || !fileExists(filepath.Join(m, "initdb")) {
				continue
			}
			best, dir = v, m
		}
		if dir == "" {
			return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin; %s, or set the binary directory", hint)
		}
	}
	for _, name := range []string{"initdb", "postgres"} {
		if !fileExists(filepath.Join(dir, name)) {
			return "", fmt.Errorf("PostgreSQL binary %s not found in %s; %s", name, dir, hint)
		}
	}
	return dir, nil
}

// serverCredential returns the identity to run PostgreSQL as: nil (the current user) unless we are
// root, which PostgreSQL refuses, in which case the "postgres" system user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no \"postgres\" system user to run it as (install postgresql: apt-get install postgresql): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	// Supplementary groups (ssl-cert on Debian) so the server can read keys shared that way.
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				groups = append(groups, uint32(g))
			}
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// ChownForServer makes path owned by the user a server started by this process runs as, and lets
// that user reach it, so that files named in Config.Settings are usable by the server (PostgreSQL
// wants ssl_key_file to be 0600 and owned by the server's user). When the caller is root, the
// server runs as "postgres": path is given to that user, and directories above it inside the
// temporary directory get the search bit for others (t.TempDir's parents are 0700). It does nothing
// when the caller is not root, since the server then runs as the caller.
func ChownForServer(path string) error {
	cred, err := serverCredential()
	if err != nil || cred == nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("chown for server: %w", err)
	}
	return makeSearchable(abs, cred)
}

func chownTo(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("chown %s to the postgres user: %w", path, err)
	}
	return nil
}

// makeSearchable gives path to the server's user and makes sure that user can reach it: directories
// above it that only root may enter (t.TempDir's parent is 0700) get the search bit for others when
// they are inside the temporary directory; elsewhere it is an error that says what to change.
func makeSearchable(path string, cred *syscall.Credential) error {
	if err := chownTo(path, cred); err != nil {
		return err
	}
	tmp, _ := filepath.Abs(os.TempDir())
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("server directory: %w", err)
		}
		if !searchable(st, cred) {
			if !strings.HasPrefix(p, tmp+string(filepath.Separator)) {
				return fmt.Errorf("directory %s cannot be entered by the postgres user, which runs the server when Gatehouse runs as root: chmod o+x %s, or choose another directory", p, p)
			}
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("let the postgres user enter %s: %w", p, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func searchable(st os.FileInfo, cred *syscall.Credential) bool {
	perm := st.Mode().Perm()
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	switch {
	case sys.Uid == cred.Uid:
		return perm&0o100 != 0
	case sys.Gid == cred.Gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

func writeOwned(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return chownTo(path, cred)
}

// childEnv is the environment for initdb and postgres: ours without PG* variables (PGDATA, PGPORT...)
// that could point them elsewhere, and with a C locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
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
