package cli

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/controlplane"
	"github.com/gatehousedb/gatehouse/internal/mysqlserver"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
	"github.com/gatehousedb/gatehouse/internal/sidecar"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// QuickstartReadyPrefix starts the line `gatehouse quickstart` prints once everything accepts
// connections; scripts and the e2e tests wait for it.
const QuickstartReadyPrefix = "gatehouse: quickstart ready"

// Names the quickstart registers. Re-running it in the same data directory updates them.
const (
	qsRepository  = "quickstart"
	qsRepoUser    = "quickstart_user"
	qsDatabase    = "quickstart"
	qsSidecarName = "quickstart"
	qsPolicy      = "quickstart-admin"
	// qsPasswordEnv is the environment variable the repository user's secret reference names;
	// the quickstart sets it in its own process, where the in-process sidecar reads it.
	qsPasswordEnv = "GATEHOUSE_QUICKSTART_DB_PASSWORD"

	// With --mysql: the throwaway MariaDB's repository (same user and database names), its
	// policy, and its password's variable.
	qsMySQLRepository  = "quickstart-mysql"
	qsMySQLPolicy      = "quickstart-mysql-admin"
	qsMySQLPasswordEnv = "GATEHOUSE_QUICKSTART_MYSQL_PASSWORD"
)

type quickstartFlags struct {
	dataDir       string
	listen        string
	sidecarPort   int
	repositoryURL string
	tokenTTL      time.Duration
	mysql         bool
	mysqlPort     int
}

func newQuickstartCmd(e *env) *cobra.Command {
	var f quickstartFlags
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run a complete local Gatehouse: control plane, sidecar and a throwaway PostgreSQL",
		Long: `Run everything Gatehouse needs on this machine, in one process:

  - the control plane on SQLite in --data-dir (the API at --listen);
  - a throwaway PostgreSQL from this machine's binaries (removed on exit), unless
    --repository-url points at a database of your own;
  - a sidecar with a generated key, listening on --sidecar-port;
  - the registrations that connect them: repository "quickstart", repository user
    "quickstart_user" (its password comes from the env secret source), the sidecar, its listener
    port and binding, and an impersonation policy letting "admin" connect as that user;
  - an access token for "admin", printed with a ready psql command and written, with the other
    connection settings, to DATA_DIR/quickstart.env for "source".

With --mysql it also starts a throwaway MariaDB from this machine's binaries and registers it as
repository "quickstart-mysql" (same user and database names) behind a second listener port,
--mysql-port, of the same sidecar; it prints a ready mariadb command and adds MYSQL_HOST,
MYSQL_TCP_PORT, MYSQL_USER, MYSQL_PWD and MYSQL_DATABASE to quickstart.env. A later run without
--mysql removes that repository and its port.

The administrator's password is GATEHOUSE_ADMIN_PASSWORD when set, else generated and printed
once on the first run. Ctrl-C stops everything the quickstart started.`,
		Example: `  gatehouse quickstart
  source gatehouse-data/quickstart.env && psql -c 'select current_user'
  gatehouse quickstart --repository-url 'postgres://app:secret@db.example.com:5432/app?sslmode=require'
  gatehouse quickstart --mysql
  source gatehouse-data/quickstart.env && mariadb --ssl -u "$MYSQL_USER" "$MYSQL_DATABASE"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.sidecarPort < 1 || f.sidecarPort > 65535 {
				return usageErrorf("--sidecar-port must be between 1 and 65535")
			}
			if f.mysql && (f.mysqlPort < 1 || f.mysqlPort > 65535 || f.mysqlPort == f.sidecarPort) {
				return usageErrorf("--mysql-port must be between 1 and 65535 and differ from --sidecar-port")
			}
			if f.tokenTTL <= 0 || f.tokenTTL > gatehouse.DefaultMaxTokenTTL {
				return usageErrorf("--token-ttl must be positive and at most %s", gatehouse.DefaultMaxTokenTTL)
			}
			return runQuickstart(cmd.Context(), e, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "./gatehouse-data", "directory for the control plane's store, the sidecar key and quickstart.env")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the control plane's API")
	fl.IntVar(&f.sidecarPort, "sidecar-port", 15432, "the sidecar's PostgreSQL listener port (on 127.0.0.1)")
	fl.StringVar(&f.repositoryURL, "repository-url", "", "use this PostgreSQL (postgres://user:password@host:port/db?sslmode=...) instead of starting one")
	fl.DurationVar(&f.tokenTTL, "token-ttl", 8*time.Hour, "lifetime of the admin's access token")
	fl.BoolVar(&f.mysql, "mysql", false, "also start a throwaway MariaDB and put it behind --mysql-port")
	fl.IntVar(&f.mysqlPort, "mysql-port", 13306, "with --mysql: the sidecar's MySQL listener port (on 127.0.0.1)")
	return cmd
}

// upstream is the database the quickstart puts behind the sidecar.
type upstream struct {
	host     string
	port     int
	user     string
	password string
	database string
	tlsMode  gatehouse.TLSMode
}

func runQuickstart(ctx context.Context, e *env, f quickstartFlags) (err error) {
	logger := e.logger()
	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	// 1. The database.
	var up upstream
	if f.repositoryURL != "" {
		if up, err = parseRepositoryURL(f.repositoryURL); err != nil {
			return usageErrorf("--repository-url: %v", err)
		}
	} else {
		fmt.Fprintln(e.Stderr, "gatehouse: starting a throwaway PostgreSQL ...")
		pg, err := pgserver.Start(ctx, pgserver.Config{Logger: logger})
		if err != nil {
			return fmt.Errorf("start PostgreSQL (or pass --repository-url): %w", err)
		}
		defer pg.Stop()
		if up, err = prepareThrowaway(ctx, pg); err != nil {
			return err
		}
	}
	// The env secret source reads the password from this process's environment: it is never
	// written to disk or sent to the control plane.
	if err := os.Setenv(qsPasswordEnv, up.password); err != nil {
		return err
	}
	var my *quickstartMySQL
	if f.mysql {
		fmt.Fprintln(e.Stderr, "gatehouse: starting a throwaway MariaDB ...")
		ms, err := mysqlserver.Start(ctx, mysqlserver.Config{Logger: logger})
		if err != nil {
			return fmt.Errorf("start MariaDB (install mariadb-server, or leave out --mysql): %w", err)
		}
		defer ms.Stop()
		if my, err = prepareThrowawayMySQL(ctx, ms); err != nil {
			return err
		}
		if err := os.Setenv(qsMySQLPasswordEnv, my.password); err != nil {
			return err
		}
	}

	// 2. The control plane.
	cp, err := controlplane.New(ctx, controlplane.Config{
		DataDir:       dataDir,
		Listen:        f.listen,
		AdminPassword: e.Getenv("GATEHOUSE_ADMIN_PASSWORD"),
		Stdout:        e.Stdout,
		Logger:        logger,
	})
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer cp.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cp.Run(gctx) })
	// fail stops what has started and returns err.
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		return err
	}

	// 3. Registrations, through the API like any admin's.
	sc, token, expires, err := quickstartRegister(gctx, cp, dataDir, f, up, my)
	if err != nil {
		return fail(err)
	}

	// 4. The sidecar.
	side, err := sidecar.New(sidecar.Config{
		ControlPlane:   cp.URL(),
		SidecarID:      sc.id,
		PrivateKeyFile: sc.keyFile,
		DataDir:        filepath.Join(dataDir, "sidecar"),
		ListenHost:     "127.0.0.1",
		Logger:         logger,
	})
	if err != nil {
		return fail(err)
	}
	g.Go(func() error { return side.Run(gctx) })
	if err := waitForPort(gctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(f.sidecarPort)), 20*time.Second); err != nil {
		return fail(fmt.Errorf("the sidecar did not open port %d (is it in use? try --sidecar-port): %w", f.sidecarPort, err))
	}
	if my != nil {
		if err := waitForPort(gctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(f.mysqlPort)), 20*time.Second); err != nil {
			return fail(fmt.Errorf("the sidecar did not open port %d (is it in use? try --mysql-port): %w", f.mysqlPort, err))
		}
	}

	// 5. What the person types.
	envFile := filepath.Join(dataDir, "quickstart.env")
	vars := [][2]string{
		{"PGHOST", "127.0.0.1"},
		{"PGPORT", strconv.Itoa(f.sidecarPort)},
		{"PGUSER", up.user},
		{"PGPASSWORD", token},
		{"PGDATABASE", up.database},
		{"PGSSLMODE", "require"},
		{"GATEHOUSE_SERVER", cp.URL()},
	}
	if my != nil {
		// The mariadb and mysql clients read MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD; user and
		// database go on the command line ("$MYSQL_USER" "$MYSQL_DATABASE").
		vars = append(vars, [][2]string{
			{"MYSQL_HOST", "127.0.0.1"},
			{"MYSQL_TCP_PORT", strconv.Itoa(f.mysqlPort)},
			{"MYSQL_USER", my.user},
			{"MYSQL_PWD", token},
			{"MYSQL_DATABASE", my.database},
		}...)
	}
	if err := writeEnvFile(envFile, vars); err != nil {
		return fail(err)
	}
	fmt.Fprintf(e.Stdout, `
Gatehouse is running.
  control plane  %s   (sign in: gatehouse login --server %s --username admin)
  sidecar        127.0.0.1:%d, PostgreSQL, as repository user %q of repository %q
`, cp.URL(), cp.URL(), f.sidecarPort, up.user, qsRepository)
	if my != nil {
		fmt.Fprintf(e.Stdout, "  sidecar        127.0.0.1:%d, MySQL (MariaDB %s), as repository user %q of repository %q\n",
			f.mysqlPort, my.version, my.user, qsMySQLRepository)
	}
	fmt.Fprintf(e.Stdout, `  access token   for "admin", expires %s

Connect with psql through the sidecar (the token is the password):
  PGPASSWORD=%s psql "host=127.0.0.1 port=%d user=%s dbname=%s sslmode=require"
or:
  source %s && psql
`, expires.Local().Format(time.RFC1123), token, f.sidecarPort, up.user, up.database, envFile)
	if my != nil {
		fmt.Fprintf(e.Stdout, `
Connect with the mariadb (or mysql) client through the sidecar:
  MYSQL_PWD=%s mariadb -h 127.0.0.1 -P %d -u %s --ssl %s
or:
  source %s && mariadb --ssl -u "$MYSQL_USER" "$MYSQL_DATABASE"
`, token, f.mysqlPort, my.user, my.database, envFile)
	}
	fmt.Fprintf(e.Stdout, "\n%s (Ctrl-C stops everything)\n", QuickstartReadyPrefix)

	<-gctx.Done()
	fmt.Fprintln(e.Stderr, "gatehouse: stopping ...")
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// prepareThrowaway creates the quickstart's database and its owner with a random password.
func prepareThrowaway(ctx context.Context, pg *pgserver.Server) (upstream, error) {
	pw, err := randomHex(24)
	if err != nil {
		return upstream{}, err
	}
	if err := pg.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", qsRepoUser, pw)); err != nil {
		return upstream{}, fmt.Errorf("create quickstart role: %w", err)
	}
	if err := pg.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", qsDatabase, qsRepoUser)); err != nil {
		return upstream{}, fmt.Errorf("create quickstart database: %w", err)
	}
	return upstream{host: pg.Host(), port: pg.Port(), user: qsRepoUser, password: pw, database: qsDatabase, tlsMode: gatehouse.TLSPrefer}, nil
}

// quickstartMySQL is the throwaway MariaDB of --mysql.
type quickstartMySQL struct {
	upstream
	version string // major.minor, what the listener port presents: "10.11"
}

// prepareThrowawayMySQL creates the quickstart's database and its user with a random password in
// the MariaDB, and asks the server its version as that user, which also proves the credential.
func prepareThrowawayMySQL(ctx context.Context, ms *mysqlserver.Server) (*quickstartMySQL, error) {
	pw, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	account := fmt.Sprintf("'%s'@'%s'", qsRepoUser, ms.Host())
	if err := ms.Exec(ctx, fmt.Sprintf("CREATE USER %s IDENTIFIED BY '%s'; CREATE DATABASE %s; GRANT ALL ON %s.* TO %s",
		account, pw, qsDatabase, qsDatabase, account)); err != nil {
		return nil, fmt.Errorf("create quickstart MySQL user and database: %w", err)
	}
	my := &quickstartMySQL{upstream: upstream{host: ms.Host(), port: ms.Port(), user: qsRepoUser, password: pw,
		database: qsDatabase, tlsMode: gatehouse.TLSPrefer}}
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.DBName = my.user, my.password, "tcp", my.database
	c.Addr = net.JoinHostPort(my.host, strconv.Itoa(my.port))
	c.Timeout = 10 * time.Second
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return nil, fmt.Errorf("connect to the quickstart MariaDB as %s: %w", my.user, err)
	}
	if my.version = majorMinor(v); my.version == "" {
		return nil, fmt.Errorf("MariaDB reports version %q; expected major.minor.patch", v)
	}
	return my, nil
}

// majorMinor returns "10.11" for "10.11.14-MariaDB-0+deb12u2", or "" when v does not start with
// two numbers.
func majorMinor(v string) string {
	major, rest, ok := strings.Cut(v, ".")
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if _, err := strconv.Atoi(major); err != nil || !ok || i == 0 {
		return ""
	}
	return major + "." + rest[:i]
}

// parseRepositoryURL reads a libpq-style URL. The password goes only into this process's memory.
func parseRepositoryURL(s string) (upstream, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return upstream{}, errors.New("must be a URL like postgres://user:password@host:5432/db")
	}
	up := upstream{host: u.Hostname(), port: 5432, database: strings.TrimPrefix(u.Path, "/"), tlsMode: gatehouse.TLSPrefer}
	if p := u.Port(); p != "" {
		if up.port, err = strconv.Atoi(p); err != nil {
			return upstream{}, fmt.Errorf("port %q is not a number", p)
		}
	}
	up.user = u.User.Username()
	up.password, _ = u.User.Password()
	if up.user == "" || up.password == "" {
		return upstream{}, errors.New("must include a user and password (postgres://user:password@host/db)")
	}
	if up.database == "" {
		up.database = "postgres"
	}
	if m := u.Query().Get("sslmode"); m != "" {
		up.tlsMode = gatehouse.TLSMode(m)
		if err := up.tlsMode.Validate("sslmode"); err != nil {
			return upstream{}, err
		}
	}
	if err := gatehouse.ValidateHostname("host", up.host); err != nil {
		return upstream{}, err
	}
	return up, nil
}

type quickstartSidecar struct {
	id      string
	keyFile string
}

// quickstartRegister makes or updates every object the quickstart needs and mints the admin's
// token. It is idempotent: a second run in the same data directory updates what the first made.
// my is the MariaDB of --mysql, or nil; without it, what an earlier --mysql run registered is
// removed.
func quickstartRegister(ctx context.Context, cp *controlplane.Server, dataDir string, f quickstartFlags, up upstream, my *quickstartMySQL) (quickstartSidecar, string, time.Time, error) {
	var sc quickstartSidecar
	bearer, err := cp.NewSession(ctx, gatehouse.BootstrapAdmin)
	if err != nil {
		return sc, "", time.Time{}, err
	}
	c := newClient(cp.URL())
	c.token = bearer

	version, err := serverMajorVersion(ctx, up)
	if err != nil {
		return sc, "", time.Time{}, err
	}
	repo := gatehouse.Repository{Name: qsRepository, Type: gatehouse.PostgreSQL, Version: version, Hostname: up.host,
		Port: up.port, Database: up.database, TLSMode: up.tlsMode}
	if err := upsert(ctx, c, path("repositories"), path("repositories", qsRepository), repo); err != nil {
		return sc, "", time.Time{}, fmt.Errorf("register repository: %w", err)
	}
	user := gatehouse.RepositoryUser{Username: up.user, Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: qsPasswordEnv}}
	if err := upsert(ctx, c, path("repositories", qsRepository, "users"), path("repositories", qsRepository, "users", up.user), user); err != nil {
		return sc, "", time.Time{}, fmt.Errorf("register repository user: %w", err)
	}

	keyDir := filepath.Join(dataDir, "sidecar")
	sc.keyFile = filepath.Join(keyDir, syncapi.PrivateKeyFile)
	if _, err := os.Stat(sc.keyFile); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(keyDir, 0o700); err != nil {
			return sc, "", time.Time{}, err
		}
		if _, _, err := syncapi.WriteKeyPair(keyDir); err != nil {
			return sc, "", time.Time{}, fmt.Errorf("generate the sidecar's key: %w", err)
		}
	}
	pub, err := os.ReadFile(filepath.Join(keyDir, syncapi.PublicKeyFile))
	if err != nil {
		return sc, "", time.Time{}, err
	}
	raw, err := c.get(ctx, path("sidecars"))
	if err != nil {
		return sc, "", time.Time{}, err
	}
	sidecars, err := decodeList[gatehouse.Sidecar](raw)
	if err != nil {
		return sc, "", time.Time{}, err
	}
	want := gatehouse.Sidecar{DisplayName: qsSidecarName, Hostname: "localhost", PublicKey: string(pub)}
	for _, s := range sidecars {
		if s.DisplayName == qsSidecarName {
			sc.id = s.ID
		}
	}
	if sc.id == "" {
		raw, err := c.post(ctx, path("sidecars"), want)
		if err != nil {
			return sc, "", time.Time{}, fmt.Errorf("register sidecar: %w", err)
		}
		s, err := decode[gatehouse.Sidecar](raw)
		if err != nil {
			return sc, "", time.Time{}, err
		}
		sc.id = s.ID
	} else if _, err := c.put(ctx, path("sidecars", sc.id), want); err != nil {
		return sc, "", time.Time{}, fmt.Errorf("update sidecar: %w", err)
	}

	// Ports and bindings of earlier runs on other ports are removed, so the sidecar serves just
	// this run's: PostgreSQL's, and MySQL's with --mysql.
	raw, err = c.get(ctx, path("sidecars", sc.id, "ports"))
	if err != nil {
		return sc, "", time.Time{}, err
	}
	ports, err := decodeList[gatehouse.ListenerPort](raw)
	if err != nil {
		return sc, "", time.Time{}, err
	}
	for _, p := range ports {
		if p.Port != f.sidecarPort && (my == nil || p.Port != f.mysqlPort) {
			if _, err := c.del(ctx, path("sidecars", sc.id, "ports", strconv.Itoa(p.Port)), true); err != nil {
				return sc, "", time.Time{}, err
			}
		}
	}
	port := gatehouse.ListenerPort{Port: f.sidecarPort, Type: gatehouse.PostgreSQL, Version: version}
	if err := upsert(ctx, c, path("sidecars", sc.id, "ports"), path("sidecars", sc.id, "ports", strconv.Itoa(f.sidecarPort)), port); err != nil {
		return sc, "", time.Time{}, fmt.Errorf("register listener port: %w", err)
	}
	binding := gatehouse.Binding{Port: f.sidecarPort, Repository: qsRepository}
	if _, err := c.post(ctx, path("sidecars", sc.id, "bindings"), binding); err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeConflict {
		return sc, "", time.Time{}, fmt.Errorf("bind port %d to repository %s: %w", f.sidecarPort, qsRepository, err)
	}
	policy := gatehouse.ImpersonationPolicy{Name: qsPolicy, DisplayName: "Quickstart: admin connects as " + up.user, Repository: qsRepository,
		Rules: []gatehouse.ImpersonationRule{{Users: []string{gatehouse.BootstrapAdmin}, RepositoryUsers: []string{up.user}}}}
	if err := upsert(ctx, c, path("impersonation-policies"), path("impersonation-policies", qsPolicy), policy); err != nil {
		return sc, "", time.Time{}, fmt.Errorf("create impersonation policy: %w", err)
	}
	if err := quickstartRegisterMySQL(ctx, c, sc.id, f, my); err != nil {
		return sc, "", time.Time{}, err
	}

	raw, err = c.post(ctx, path("tokens"), map[string]string{"ttl": f.tokenTTL.String(), "name": "quickstart"})
	if err != nil {
		return sc, "", time.Time{}, fmt.Errorf("create access token: %w", err)
	}
	tok, err := decode[struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}](raw)
	if err != nil {
		return sc, "", time.Time{}, err
	}
	return sc, tok.Token, tok.ExpiresAt, nil
}

// quickstartRegisterMySQL registers the MariaDB of --mysql like the PostgreSQL: repository,
// repository user, listener port, binding and impersonation policy. Without --mysql (my == nil) it
// deletes the repository an earlier --mysql run registered, with its user, binding and policy:
// that MariaDB is gone, and its listener port was removed with the other ports of earlier runs.
func quickstartRegisterMySQL(ctx context.Context, c *client, sidecarID string, f quickstartFlags, my *quickstartMySQL) error {
	if my == nil {
		if _, err := c.del(ctx, path("repositories", qsMySQLRepository), true); err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
			return fmt.Errorf("remove repository %s of an earlier --mysql run: %w", qsMySQLRepository, err)
		}
		return nil
	}
	repo := gatehouse.Repository{Name: qsMySQLRepository, Type: gatehouse.MySQL, Version: my.version, Hostname: my.host,
		Port: my.port, Database: my.database, TLSMode: my.tlsMode}
	if err := upsert(ctx, c, path("repositories"), path("repositories", qsMySQLRepository), repo); err != nil {
		return fmt.Errorf("register MySQL repository: %w", err)
	}
	user := gatehouse.RepositoryUser{Username: my.user, Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: qsMySQLPasswordEnv}}
	if err := upsert(ctx, c, path("repositories", qsMySQLRepository, "users"), path("repositories", qsMySQLRepository, "users", my.user), user); err != nil {
		return fmt.Errorf("register MySQL repository user: %w", err)
	}
	port := gatehouse.ListenerPort{Port: f.mysqlPort, Type: gatehouse.MySQL, Version: my.version}
	if err := upsert(ctx, c, path("sidecars", sidecarID, "ports"), path("sidecars", sidecarID, "ports", strconv.Itoa(f.mysqlPort)), port); err != nil {
		return fmt.Errorf("register MySQL listener port: %w", err)
	}
	binding := gatehouse.Binding{Port: f.mysqlPort, Repository: qsMySQLRepository}
	if _, err := c.post(ctx, path("sidecars", sidecarID, "bindings"), binding); err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeConflict {
		return fmt.Errorf("bind port %d to repository %s: %w", f.mysqlPort, qsMySQLRepository, err)
	}
	policy := gatehouse.ImpersonationPolicy{Name: qsMySQLPolicy, DisplayName: "Quickstart: admin connects to MariaDB as " + my.user,
		Repository: qsMySQLRepository,
		Rules:      []gatehouse.ImpersonationRule{{Users: []string{gatehouse.BootstrapAdmin}, RepositoryUsers: []string{my.user}}}}
	if err := upsert(ctx, c, path("impersonation-policies"), path("impersonation-policies", qsMySQLPolicy), policy); err != nil {
		return fmt.Errorf("create MySQL impersonation policy: %w", err)
	}
	return nil
}

// upsert creates an object, or replaces it when it already exists.
func upsert(ctx context.Context, c *client, collection, item string, v any) error {
	_, err := c.post(ctx, collection, v)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeConflict {
		_, err = c.put(ctx, item, v)
	}
	return err
}

// serverMajorVersion asks the database its major version, so the listener port presents it. It
// also proves the credential works before anyone tries psql.
func serverMajorVersion(ctx context.Context, up upstream) (string, error) {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(up.user, up.password),
		Host: net.JoinHostPort(up.host, strconv.Itoa(up.port)), Path: "/" + up.database,
		RawQuery: url.Values{"sslmode": {string(up.tlsMode)}}.Encode()}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return "", fmt.Errorf("repository address: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connect to the repository at %s:%d: %w", up.host, up.port, err)
	}
	defer conn.Close(ctx)
	var num int
	if err := conn.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&num); err != nil {
		return "", err
	}
	return strconv.Itoa(num / 10000), nil
}

func waitForPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeEnvFile writes KEY='value' lines for `source`, readable only by the owner (it holds an
// access token).
func writeEnvFile(p string, vars [][2]string) error {
	var b strings.Builder
	b.WriteString("# Written by gatehouse quickstart; use with: source " + p + "\n")
	for _, kv := range vars {
		fmt.Fprintf(&b, "export %s='%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", `'\''`))
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return os.Rename(tmp, p)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
