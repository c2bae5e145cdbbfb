package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// A real OpenID Provider for the SSO tests: zitadel/oidc's example OP, in this test process, with
// users and groups the test chooses. Its storage is wrapped to put a "groups" claim in ID tokens
// and userinfo, and, on demand, to issue ID tokens that are already expired.

const (
	opClientID     = "gatehouse"
	opClientSecret = "op-client-secret-for-tests"
	opPassword     = "idp-Passw0rd!"
)

// opUser is a user of the test OP.
type opUser struct {
	Username string // what the person types on the OP's login page
	Email    string
	Groups   []string
}

type testOP struct {
	Issuer  string
	expired atomic.Bool // issue expired ID tokens
}

type opUserStore struct {
	users map[string]*storage.User
}

func (s opUserStore) GetUserByID(id string) *storage.User { return s.users[id] }
func (s opUserStore) GetUserByUsername(name string) *storage.User {
	for _, u := range s.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}
func (s opUserStore) ExampleClientID() string { return storage.ServiceUserID }

type opStorage struct {
	*storage.Storage
	op     *testOP
	groups map[string][]string // user ID -> groups
}

func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groups[req.GetSubject()])
	return nil
}

func (s *opStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groups[ui.Subject])
	return nil
}

func (s *opStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return &opClient{Client: c, op: s.op}, nil
}

type opClient struct {
	op.Client
	op *testOP
}

func (c *opClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || c.Client.IsScopeAllowed(scope)
}

func (c *opClient) IDTokenLifetime() time.Duration {
	if c.op.expired.Load() {
		return -10 * time.Minute
	}
	return c.Client.IDTokenLifetime()
}

// startOP starts the OP on a free loopback port; redirectURI is the control plane's callback.
func startOP(t *testing.T, redirectURI string, users ...opUser) *testOP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &testOP{Issuer: "http://" + ln.Addr().String()}
	us := opUserStore{users: map[string]*storage.User{}}
	groups := map[string][]string{}
	for i, u := range users {
		id := "user" + string(rune('a'+i))
		us.users[id] = &storage.User{ID: id, Username: u.Username, Password: opPassword, FirstName: "Test", LastName: u.Username,
			Email: u.Email, EmailVerified: true, PreferredLanguage: language.English}
		groups[id] = u.Groups
	}
	clients := map[string]*storage.Client{opClientID: storage.WebClient(opClientID, opClientSecret, redirectURI)}
	st := &opStorage{Storage: storage.NewStorageWithClients(us, clients), op: o, groups: groups}
	handler := exampleop.SetupServer(o.Issuer, st, nil, false, op.WithAllowInsecure())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

// writeSecret writes the OIDC client secret to a file for --oidc-client-secret-file.
func writeSecret(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(p, []byte(opClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// browser is an HTTP client with cookies that follows redirects, except to the control plane's
// SSO callback when stopAtCallback is set, so a test can look at (and replay) that URL.
type browser struct {
	*http.Client
	stopAtCallback bool
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{stopAtCallback: true}
	b.Client = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if b.stopAtCallback && req.URL.Path == "/api/v1/sso/callback" {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return errors.New("too many redirects")
		}
		return nil
	}}
	return b
}

// signIn opens startURL (the control plane's /api/v1/sso/login), signs in on the OP's login page
// as username and returns the IdP's redirect to the control plane's callback, not yet followed.
func (b *browser) signIn(t *testing.T, startURL, username string) *url.URL {
	t.Helper()
	resp, err := b.Get(startURL)
	if err != nil {
		t.Fatalf("open %s: %v", startURL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("the OP's login page: %s at %s\n%s", resp.Status, resp.Request.URL, body)
	}
	login := *resp.Request.URL
	login.RawQuery = ""
	resp, err = b.PostForm(login.String(), url.Values{"id": {id}, "username": {username}, "password": {opPassword}})
	if err != nil {
		t.Fatalf("submit the OP's login form: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusFound || err != nil || loc.Path != "/api/v1/sso/callback" {
		t.Fatalf("after signing in at the OP: %s %v\n%s", resp.Status, err, body)
	}
	return loc
}

// get fetches u and returns the response with its body read.
func (b *browser) get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// do sends a request with the browser's cookies and extra headers.
func (b *browser) do(t *testing.T, method, u string, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(out)
}

func (b *browser) cookie(t *testing.T, base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}
