package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
// and userinfo, and, on demand, to issue ID tokens that are already expired. Its client may use
// the device authorization grant (RFC 8628; the example OP's device pages play the person's
// browser), which the OP can also hide from its discovery document, as IdPs without it do.

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
	Issuer    string
	expired   atomic.Bool  // issue expired ID tokens
	noDevice  atomic.Bool  // leave device_authorization_endpoint out of the discovery document
	deviceTTL atomic.Int64 // when > 0, device codes expire after this long (the OP still says 5 minutes)

	mu          sync.Mutex
	deviceCodes []string // every device code issued, to look for in logs
}

// issuedDeviceCodes returns the device codes the OP has issued.
func (o *testOP) issuedDeviceCodes() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.deviceCodes)
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
	users  opUserStore
	groups map[string][]string // user ID -> groups
}

func (s *opStorage) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if ttl := time.Duration(s.op.deviceTTL.Load()); ttl > 0 {
		expires = time.Now().Add(ttl)
	}
	s.op.mu.Lock()
	s.op.deviceCodes = append(s.op.deviceCodes, deviceCode)
	s.op.mu.Unlock()
	return s.Storage.StoreDeviceAuthorization(ctx, clientID, deviceCode, userCode, expires, scopes)
}

// CompleteDeviceAuthorization: the example's device pages pass the user name the person typed as
// the subject, where its other flows (and userinfo) use the user's ID.
func (s *opStorage) CompleteDeviceAuthorization(ctx context.Context, userCode, username string) error {
	u := s.users.GetUserByUsername(username)
	if u == nil {
		return errors.New("no such user")
	}
	return s.Storage.CompleteDeviceAuthorization(ctx, userCode, u.ID)
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

func (c *opClient) GrantTypes() []oidc.GrantType {
	return append(slices.Clone(c.Client.GrantTypes()), oidc.GrantTypeDeviceCode)
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
	st := &opStorage{Storage: storage.NewStorageWithClients(us, clients), op: o, users: us, groups: groups}
	handler := exampleop.SetupServer(o.Issuer, st, nil, false, op.WithAllowInsecure())
	srv := &http.Server{Handler: o.hideDevice(handler), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

// hideDevice serves the discovery document without device_authorization_endpoint while noDevice
// is set.
func (o *testOP) hideDevice(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !o.noDevice.Load() || r.URL.Path != "/.well-known/openid-configuration" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		delete(doc, "device_authorization_endpoint")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	})
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

// approveDevice plays the person at the OP's device pages: opens verificationURI, enters
// userCode, signs in as username and answers action ("allowed" or "denied"). It returns the last
// page.
func (b *browser) approveDevice(t *testing.T, verificationURI, userCode, username, action string) string {
	t.Helper()
	resp, body := b.get(t, verificationURI)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="user_code"`) {
		t.Fatalf("the OP's device page %s: %s\n%s", verificationURI, resp.Status, body)
	}
	resp, err := b.PostForm(verificationURI, url.Values{"user_code": {userCode}})
	if err != nil {
		t.Fatalf("enter the user code: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `value="`+userCode+`"`) {
		t.Fatalf("after entering the user code: %s\n%s", resp.Status, page)
	}
	dev, _ := url.Parse(verificationURI)
	dev.RawQuery = ""
	resp, err = b.PostForm(dev.JoinPath("login").String(), url.Values{"user_code": {userCode}, "username": {username}, "password": {opPassword}})
	if err != nil {
		t.Fatalf("sign in on the OP's device page: %v", err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "action=allowed") {
		t.Fatalf("after signing in on the device page: %s\n%s", resp.Status, page)
	}
	resp, body = b.get(t, dev.JoinPath("confirm").String()+"?action="+action)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Device authorization "+action) {
		t.Fatalf("confirm %s: %s\n%s", action, resp.Status, body)
	}
	return body
}
