package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// clientCommand is how a native SQL client is started: the program, its arguments, and the
// environment variable that carries the password (never an argument, which other local users can
// read in the process list).
type clientCommand struct {
	Program     string
	Args        []string
	Env         []string // KEY=VALUE, without the password
	PasswordEnv string
}

// nativeClient returns the command for conn's database type; program overrides the client binary.
func nativeClient(conn gatehouse.Connection, host, program string) (*clientCommand, error) {
	port := strconv.Itoa(conn.Port)
	var c clientCommand
	switch conn.Type {
	case gatehouse.PostgreSQL:
		c = clientCommand{Program: "psql", Args: []string{"-h", host, "-p", port, "-U", conn.Username}, PasswordEnv: "PGPASSWORD",
			Env: []string{"PGSSLMODE=require"}} // the token travels only inside TLS
		if conn.Database != "" {
			c.Args = append(c.Args, "-d", conn.Database)
		}
	case gatehouse.MySQL:
		c = clientCommand{Program: "mysql", Args: []string{"-h", host, "-P", port, "-u", conn.Username}, PasswordEnv: "MYSQL_PWD"}
		if conn.Database != "" {
			c.Args = append(c.Args, conn.Database)
		}
	case gatehouse.SQLServer:
		c = clientCommand{Program: "sqlcmd", Args: []string{"-S", host + "," + port, "-U", conn.Username, "-N"}, PasswordEnv: "SQLCMDPASSWORD"}
		if conn.Database != "" {
			c.Args = append(c.Args, "-d", conn.Database)
		}
	default:
		return nil, fmt.Errorf("gatehouse connect cannot start a %s client without putting the token on its command line; connect with the details from gatehouse connections", conn.Type)
	}
	if program != "" {
		c.Program = program
	}
	return &c, nil
}

// cachedToken is an access token gatehouse connect made and may reuse while it is valid. It is kept
// in connect-tokens.json in the config directory, readable only by the user, like the session.
type cachedToken struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// minTokenLife is how much life a cached token needs left to be reused.
const minTokenLife = 5 * time.Minute

func newConnectCmd(e *env) *cobra.Command {
	var repoUser, ttl, host, program string
	var printOnly bool
	cmd := &cobra.Command{
		Use:   "connect REPOSITORY [--user REPOSITORY_USER] [-- CLIENT_ARGS...]",
		Short: "Start psql, mysql or sqlcmd connected to a repository through its sidecar",
		Long: `Start the native client for a repository you may connect to, with the sidecar's host name,
port and user name filled in and an access token as the password. The token goes to the client in
its password environment variable (PGPASSWORD, MYSQL_PWD, SQLCMDPASSWORD), never on its command line.

A token made by an earlier gatehouse connect is reused while it has more than 5 minutes left and
is not revoked; otherwise a new one is made with --ttl (bounded by the admin's maximum). Arguments
after -- go to the client. --print shows the command instead of running it (without the token).`,
		Example: `  gatehouse connect sales --user analyst
  gatehouse connect sales --user analyst -- -c 'SELECT count(*) FROM orders'
  gatehouse connect sales --user analyst --print`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() == 0 || len(args) == 0 {
				return usageErrorf("name the repository: gatehouse connect REPOSITORY --user REPOSITORY_USER")
			}
			if n := cmd.ArgsLenAtDash(); n > 1 || n < 0 && len(args) > 1 {
				return usageErrorf("one repository only; put client arguments after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, extra := args[0], args[1:]
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(ctx, path("connections"))
			if err != nil {
				return err
			}
			conns, err := decodeList[gatehouse.Connection](raw)
			if err != nil {
				return err
			}
			conn, err := pickConnection(conns, repo, repoUser)
			if err != nil {
				return err
			}
			if host == "" {
				host = conn.SidecarHost
			}
			cc, err := nativeClient(*conn, host, program)
			if err != nil {
				return err
			}
			cc.Args = append(cc.Args, extra...)
			if printOnly {
				return e.printClient(cc)
			}
			tok, err := e.connectToken(ctx, c, ttl)
			if err != nil {
				return err
			}
			run := exec.CommandContext(ctx, cc.Program, cc.Args...)
			run.Env = append(append(os.Environ(), cc.Env...), cc.PasswordEnv+"="+tok)
			run.Stdin, run.Stdout, run.Stderr = e.Stdin, e.Stdout, e.Stderr
			if err := run.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return fmt.Errorf("%s exited with status %d", cc.Program, ee.ExitCode())
				}
				return fmt.Errorf("start %s (install it, or name another client with --client): %w", cc.Program, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&repoUser, "user", "u", "", "repository user to connect as (required when you may use several)")
	f.StringVar(&ttl, "ttl", "1h", "lifetime of a new access token")
	f.StringVar(&host, "host", "", "connect to this host instead of the sidecar's registered host name")
	f.StringVar(&program, "client", "", "client program to run instead of psql / mysql / sqlcmd")
	f.BoolVar(&printOnly, "print", false, "print the command instead of running it; the token is not shown")
	return cmd
}

func pickConnection(conns []gatehouse.Connection, repo, repoUser string) (*gatehouse.Connection, error) {
	var users []string
	var match []gatehouse.Connection
	for _, c := range conns {
		if c.Repository != repo {
			continue
		}
		users = append(users, c.RepositoryUser)
		if repoUser == "" || c.RepositoryUser == repoUser {
			match = append(match, c)
		}
	}
	switch {
	case len(users) == 0:
		return nil, gatehouse.Errorf(gatehouse.ECodeNotFound, "you cannot connect to repository %q: no impersonation policy lets you, or it is bound to no sidecar port (see gatehouse connections)", repo)
	case len(match) == 0:
		return nil, gatehouse.Errorf(gatehouse.ECodeNotFound, "you may not connect to %q as %q; you may as: %s", repo, repoUser, strings.Join(users, ", "))
	}
	if repoUser == "" {
		for _, c := range match[1:] {
			if c.RepositoryUser != match[0].RepositoryUser {
				return nil, usageErrorf("you may connect to %q as several repository users (%s): pick one with --user", repo, strings.Join(users, ", "))
			}
		}
	}
	return &match[0], nil
}

func (e *env) printClient(cc *clientCommand) error {
	quoted := make([]string, 0, len(cc.Args)+1)
	for _, a := range append([]string{cc.Program}, cc.Args...) {
		quoted = append(quoted, shellQuote(a))
	}
	line := strings.Join(append(append([]string{}, cc.Env...), cc.PasswordEnv+"=<access token>"), " ") + " " + strings.Join(quoted, " ")
	if e.json() {
		return e.printJSON(mustJSON(map[string]any{"program": cc.Program, "args": cc.Args, "env": cc.Env, "password_env": cc.PasswordEnv}))
	}
	_, err := fmt.Fprintln(e.Stdout, line)
	return err
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (e *env) tokenCachePath() (string, error) {
	d, err := e.configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "connect-tokens.json"), nil
}

// connectToken returns a cached access token that is still good, or makes (and caches) a new one.
func (e *env) connectToken(ctx context.Context, c *client, ttl string) (string, error) {
	p, err := e.tokenCachePath()
	if err != nil {
		return "", err
	}
	key := c.base
	if s, _ := e.loadSession(); s != nil {
		key += " " + s.Username
	}
	cache := map[string]cachedToken{}
	if b, err := os.ReadFile(p); err == nil {
		_ = json.Unmarshal(b, &cache) // a broken cache is rebuilt
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read token cache: %w", err)
	}
	if t, ok := cache[key]; ok && time.Until(t.ExpiresAt) > minTokenLife {
		raw, err := c.get(ctx, path("tokens", t.ID))
		if err == nil {
			var rec gatehouse.AccessToken
			if json.Unmarshal(raw, &rec) == nil && rec.Active(time.Now()) {
				return t.Token, nil
			}
		}
	}
	raw, err := c.post(ctx, path("tokens"), map[string]string{"ttl": ttl, "name": "gatehouse connect"})
	if err != nil {
		return "", err
	}
	var t cachedToken
	if err := json.Unmarshal(raw, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("the control plane made a token but sent no secret back")
	}
	for k, v := range cache {
		if time.Now().After(v.ExpiresAt) {
			delete(cache, k)
		}
	}
	cache[key] = t
	b, _ := json.MarshalIndent(cache, "", "  ")
	if err := writePrivate(p, b); err != nil {
		return "", err
	}
	return t.Token, nil
}

// writePrivate writes b to p atomically with owner-only permissions.
func writePrivate(p string, b []byte) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
