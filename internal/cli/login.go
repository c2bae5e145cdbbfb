package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

func newLoginCmd(e *env) *cobra.Command {
	var username string
	var passwordStdin, sso, noBrowser, device bool
	var ssoTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in to a control plane and keep the session for later commands",
		Long: `Sign in to a control plane with single sign-on (--sso) or a local user name and password.
The session (server URL and bearer token) is stored in session.json in $GATEHOUSE_CONFIG_DIR, or in
the gatehouse directory of your user config directory, readable only by you.

With --sso the CLI listens on a loopback port, prints the URL to open (and opens a browser when
one is at hand), and waits for your identity provider to send the browser back. With --device (and
by itself on a machine without a display, when the identity provider supports it) it prints a URL
and a code to enter in a browser on any device instead, and waits for you to approve the sign-in
there. The session it stores is renewed with a refresh token when it expires; gatehouse logout
revokes both.

The password is read from standard input with --password-stdin, or prompted for without echo.`,
		Example: `  gatehouse login --server https://gatehouse.example.com --sso
  gatehouse login --server https://gatehouse.example.com --sso --device
  gatehouse login --server http://127.0.0.1:8080 --username admin
  printf '%s\n' "$ADMIN_PASSWORD" | gatehouse login --server https://gatehouse.example.com --username admin --password-stdin`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := e.loadSession()
			if err != nil {
				s = nil // a broken session file must not stop a new login
			}
			server := e.serverURL(s)
			if server == "" {
				return usageErrorf("which control plane? pass --server URL")
			}
			if sso {
				if username != "" || passwordStdin {
					return usageErrorf("--sso signs in through your identity provider: leave out --username and --password-stdin")
				}
				if device && noBrowser {
					return usageErrorf("--device and --no-browser are two ways to sign in without a browser here: pick one")
				}
				o := ssoLoginOptions{Device: device, NoBrowser: noBrowser}
				if cmd.Flags().Changed("timeout") {
					o.Timeout = ssoTimeout
				}
				return e.ssoLogin(cmd.Context(), server, o)
			}
			if device {
				return usageErrorf("--device goes with --sso: gatehouse login --sso --device")
			}
			if username == "" {
				if !e.Interactive() {
					return usageErrorf("--username is required when not running interactively")
				}
				fmt.Fprint(e.Stderr, "Username: ")
				if username, err = readLine(e.Stdin); err != nil {
					return fmt.Errorf("read username: %w", err)
				}
				username = strings.TrimSpace(username)
			}
			var password string
			switch {
			case passwordStdin:
				b, err := io.ReadAll(io.LimitReader(e.Stdin, 4096))
				if err != nil {
					return fmt.Errorf("read password from standard input: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			case e.Interactive():
				fmt.Fprint(e.Stderr, "Password: ")
				if password, err = e.ReadPassword(); err != nil {
					return fmt.Errorf("read password: %w", err)
				}
			default:
				return usageErrorf("standard input is not a terminal: pass the password with --password-stdin")
			}
			if password == "" {
				return usageErrorf("the password is empty")
			}
			c := newClient(server)
			raw, err := c.post(cmd.Context(), path("login"), map[string]string{"username": username, "password": password})
			if err != nil {
				return err
			}
			var resp struct {
				Token string `json:"token"`
			}
			if err := json.Unmarshal(raw, &resp); err != nil || resp.Token == "" {
				return fmt.Errorf("the control plane at %s answered the login without a token", server)
			}
			if err := e.saveSession(&session{Server: server, Username: username, Token: resp.Token}); err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(mustJSON(map[string]string{"server": server, "username": username}))
			}
			fmt.Fprintf(e.Stdout, "Logged in to %s as %s.\n", server, username)
			return nil
		},
	}
	cmd.Flags().StringVarP(&username, "username", "u", "", "user name (prompted for when interactive)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().BoolVar(&sso, "sso", false, "sign in with single sign-on in a browser")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "with --sso: only print the URL, do not try to open a browser")
	cmd.Flags().BoolVar(&device, "device", false, "with --sso: sign in with a code entered in a browser on any device (device authorization grant)")
	cmd.Flags().DurationVar(&ssoTimeout, "timeout", 5*time.Minute, "with --sso: how long to wait for the browser (with --device: at most the code's lifetime)")
	return cmd
}

func newLogoutCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "End the stored login session",
		Example: `  gatehouse logout`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := e.loadSession()
			if err != nil {
				return e.removeSession()
			}
			if s == nil {
				fmt.Fprintln(e.Stdout, "Not logged in.")
				return nil
			}
			// Best effort: end the session on the server too; the local copy goes regardless.
			c := newClient(normalizeServer(s.Server))
			c.token = s.Token
			c.refresh = e.refresher(s) // an expired SSO session is renewed so that logout can revoke its refresh token
			if _, err := c.post(cmd.Context(), path("logout"), nil); err != nil {
				fmt.Fprintf(e.Stderr, "warning: the control plane did not confirm the logout: %v\n", errorText(err))
			}
			if err := e.removeSession(); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "Logged out of %s.\n", s.Server)
			return nil
		},
	}
}

func newWhoamiCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show the signed-in user",
		Example: `  gatehouse whoami`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("me"))
			if err != nil {
				return err
			}
			u, err := decode[gatehouse.User](raw)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				return fields(e.Stdout, "Server", c.base, "Name", u.Name, "Role", string(u.Role), "Groups", strings.Join(u.Groups, ", "))
			})
		},
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
