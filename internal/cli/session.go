package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// session is what `gatehouse login` keeps between commands: which control plane, and the bearer
// token it issued. It is stored in session.json (mode 0600) in the config directory (mode 0700).
type session struct {
	Server   string `json:"server"`
	Username string `json:"username,omitempty"`
	Token    string `json:"token"`

	// Single sign-on sessions (gatehouse login --sso) are refreshable: on a 401 the CLI trades the
	// refresh token (rotated on each use) for a new session. See login_oidc.go.
	ExpiresAt        time.Time `json:"expires_at,omitzero"`
	RefreshToken     string    `json:"refresh_token,omitempty"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
}

// configDir is $GATEHOUSE_CONFIG_DIR, else os.UserConfigDir()/gatehouse.
func (e *env) configDir() (string, error) {
	if d := e.Getenv("GATEHOUSE_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config directory (set GATEHOUSE_CONFIG_DIR): %w", err)
	}
	return filepath.Join(d, "gatehouse"), nil
}

func (e *env) sessionPath() (string, error) {
	d, err := e.configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "session.json"), nil
}

// loadSession returns the stored session, or nil if there is none.
func (e *env) loadSession() (*session, error) {
	p, err := e.sessionPath()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read login session: %w", err)
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read login session %s: %w (run gatehouse logout, then log in again)", p, err)
	}
	return &s, nil
}

// saveSession writes the session atomically with owner-only permissions.
func (e *env) saveSession(s *session) error {
	p, err := e.sessionPath()
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("secure config directory: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".session-*.json")
	if err != nil {
		return fmt.Errorf("write login session: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write login session: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write login session: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write login session: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("write login session: %w", err)
	}
	return nil
}

func (e *env) removeSession() error {
	p, err := e.sessionPath()
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove login session: %w", err)
	}
	return nil
}

// serverURL is --server, else $GATEHOUSE_SERVER, else the stored session's server.
func (e *env) serverURL(s *session) string {
	u := e.server
	if u == "" {
		u = e.Getenv("GATEHOUSE_SERVER")
	}
	if u == "" && s != nil {
		u = s.Server
	}
	return normalizeServer(u)
}

func normalizeServer(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	if u != "" && !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}

// client returns an API client for the control plane, authenticated with the stored session. The
// session's token is only sent to the server it was issued by.
func (e *env) client() (*client, error) {
	s, err := e.loadSession()
	if err != nil {
		return nil, err
	}
	u := e.serverURL(s)
	if u == "" {
		return nil, errors.New("not logged in: run gatehouse login --server URL")
	}
	c := newClient(u)
	if s != nil && normalizeServer(s.Server) == u {
		c.token = s.Token
		c.refresh = e.refresher(s)
	}
	if c.token == "" {
		if s == nil {
			return nil, errors.New("not logged in: run gatehouse login --server " + u)
		}
		return nil, fmt.Errorf("not logged in to %s (the stored session is for %s): run gatehouse login --server %s", u, s.Server, u)
	}
	return c, nil
}
