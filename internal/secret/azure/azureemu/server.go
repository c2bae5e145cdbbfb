package azureemu

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resources (token audiences) the emulator issues tokens for.
const (
	KeyVaultResource = "https://vault.azure.net"
	OSSRDBMSResource = "https://ossrdbms-aad.database.windows.net"
)

// Server emulates, over HTTPS on one loopback port, the Azure endpoints Gatehouse's Azure sources
// reach: a Key Vault's secrets, the Microsoft Entra token endpoint of one tenant (client
// credentials with a client secret), and an App Service-style managed identity endpoint
// (IDENTITY_ENDPOINT + IDENTITY_HEADER). Tokens are opaque random strings the emulator remembers.
type Server struct {
	// TenantID is the tenant of the emulated directory; New sets a random one.
	TenantID string
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// TokenLifetime is how long issued tokens last; zero means one hour.
	TokenLifetime time.Duration

	mu             sync.Mutex
	secrets        map[string]*kvSecret // name -> secret
	apps           map[string]string    // client ID -> client secret
	systemMI       string               // client ID of the system-assigned identity, "" when off
	userMIs        map[string]bool      // client IDs of user-assigned identities
	identityHeader string
	grants         map[string][]string // principal (client ID) -> secret name patterns
	tokens         map[string]token
	calls          map[string]int

	srv *httptest.Server
}

type kvSecret struct {
	versions map[string]kvVersion
	latest   string
}

type kvVersion struct {
	value   string
	enabled bool
	created time.Time
}

type token struct {
	principal string
	resource  string
	expires   time.Time
}

// New returns an emulator that is not yet serving.
func New() *Server {
	return &Server{
		TenantID: randomUUID(),
		secrets:  map[string]*kvSecret{},
		apps:     map[string]string{},
		userMIs:  map[string]bool{},
		grants:   map[string][]string{},
		tokens:   map[string]token{},
		calls:    map[string]int{},
	}
}

// Start serves HTTPS on a loopback port with a certificate for 127.0.0.1 from httptest's CA.
func (s *Server) Start() {
	s.srv = httptest.NewTLSServer(s)
}

// URL is the server's base URL, https://127.0.0.1:PORT.
func (s *Server) URL() string { return s.srv.URL }

// VaultURI is the vault URI to put in a repository user's secret reference.
func (s *Server) VaultURI() string { return s.srv.URL + "/" }

// AuthorityHost is the Entra authority host (AZURE_AUTHORITY_HOST).
func (s *Server) AuthorityHost() string { return s.srv.URL + "/" }

// IdentityEndpoint is the managed identity endpoint (IDENTITY_ENDPOINT).
func (s *Server) IdentityEndpoint() string { return s.srv.URL + "/msi/token" }

// Certificate is the server's TLS certificate, for a client's trusted roots.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// Client is an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close stops the server.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Calls reports how many requests reached an endpoint: "token", "msi", "secret".
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// AddApp registers an app registration (service principal) that authenticates with a client
// secret.
func (s *Server) AddApp(clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[clientID] = clientSecret
}

// EnableManagedIdentity turns on the managed identity endpoint, which callers must present header
// to (IDENTITY_HEADER), with a system-assigned identity whose client ID is systemClientID.
func (s *Server) EnableManagedIdentity(header, systemClientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identityHeader, s.systemMI = header, systemClientID
}

// AddUserAssignedIdentity attaches a user-assigned identity to the emulated host.
func (s *Server) AddUserAssignedIdentity(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userMIs[clientID] = true
}

// Grant gives principal (an app's or identity's client ID) the "Key Vault Secrets User" role on
// the secrets matching pattern ("*" for the whole vault).
func (s *Server) Grant(principal, pattern string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[principal] = append(s.grants[principal], pattern)
}

// SetSecret adds a new enabled version of secret name and makes it the latest; it returns the
// 32-hex-digit version.
func (s *Server) SetSecret(name, value string) string {
	v := randomHex(16)
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil {
		sec = &kvSecret{versions: map[string]kvVersion{}}
		s.secrets[name] = sec
	}
	sec.versions[v] = kvVersion{value: value, enabled: true, created: s.now()}
	sec.latest = v
	return v
}

// DisableSecret disables the latest version of secret name.
func (s *Server) DisableSecret(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec := s.secrets[name]; sec != nil {
		v := sec.versions[sec.latest]
		v.enabled = false
		sec.versions[sec.latest] = v
	}
}

// VerifyToken checks a bearer token as a resource server would: issued by this emulator, for
// resource, not expired. It returns the principal's client ID.
func (s *Server) VerifyToken(tok, resource string) (string, error) {
	s.mu.Lock()
	t, ok := s.tokens[tok]
	s.mu.Unlock()
	switch {
	case !ok:
		return "", fmt.Errorf("token was not issued by this directory")
	case t.resource != resource:
		return "", fmt.Errorf("token is for %s, not %s", t.resource, resource)
	case !s.now().Before(t.expires):
		return "", fmt.Errorf("token expired at %s", t.expires.Format(time.RFC3339))
	}
	return t.principal, nil
}

func (s *Server) issue(principal, resource string) (string, time.Time) {
	life := s.TokenLifetime
	if life == 0 {
		life = time.Hour
	}
	tok := "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + randomHex(32)
	exp := s.now().Add(life).Truncate(time.Second)
	s.mu.Lock()
	s.tokens[tok] = token{principal: principal, resource: resource, expires: exp}
	s.mu.Unlock()
	return tok, exp
}

// ServeHTTP routes the emulated endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/secrets/"):
		s.count("secret")
		s.getSecret(w, r)
	case r.Method == http.MethodGet && p == "/msi/token":
		s.count("msi")
		s.managedIdentity(w, r)
	case r.Method == http.MethodGet && p == "/"+s.TenantID+"/v2.0/.well-known/openid-configuration":
		base := s.srv.URL + "/" + s.TenantID
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                base + "/v2.0",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"tenant_region_scope":                   "EU",
		})
	case r.Method == http.MethodPost && p == "/"+s.TenantID+"/oauth2/v2.0/token":
		s.count("token")
		s.tokenEndpoint(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "NotFound", "message": "the emulator does not serve " + r.Method + " " + p}})
	}
}

func (s *Server) count(e string) {
	s.mu.Lock()
	s.calls[e]++
	s.mu.Unlock()
}

// tokenEndpoint is Entra's OAuth 2.0 token endpoint for the client credentials grant.
func (s *Server) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed request body")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: the emulator supports client_credentials only, not "+gt)
		return
	}
	id := r.PostForm.Get("client_id")
	s.mu.Lock()
	want, ok := s.apps[id]
	s.mu.Unlock()
	if !ok {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application with identifier '"+id+"' was not found in the directory")
		return
	}
	if !hmac.Equal([]byte(want), []byte(r.PostForm.Get("client_secret"))) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID")
		return
	}
	resource := ""
	for _, sc := range strings.Fields(r.PostForm.Get("scope")) {
		if strings.HasSuffix(sc, "/.default") {
			resource = strings.TrimSuffix(sc, "/.default")
		}
	}
	if resource == "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012: the client credentials grant needs a RESOURCE/.default scope")
		return
	}
	tok, exp := s.issue(id, resource)
	life := int(exp.Sub(s.now()) / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": tok})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": []int{}, "timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z")})
}

// managedIdentity is the App Service managed identity endpoint (api-version 2019-08-01).
func (s *Server) managedIdentity(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	header, system := s.identityHeader, s.systemMI
	s.mu.Unlock()
	q := r.URL.Query()
	if header == "" || !hmac.Equal([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(header)) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "Unauthorized: missing or wrong X-IDENTITY-HEADER"})
		return
	}
	if q.Get("api-version") != "2019-08-01" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "unsupported api-version " + q.Get("api-version")})
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/")
	if resource == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "resource is required"})
		return
	}
	principal := system
	if id := q.Get("client_id"); id != "" {
		s.mu.Lock()
		ok := s.userMIs[id]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "No managed identity with client_id " + id + " is assigned to this resource"})
			return
		}
		principal = id
	} else if system == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "No system-assigned managed identity is enabled on this resource"})
		return
	}
	tok, exp := s.issue(principal, resource)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "expires_on": strconv.FormatInt(exp.Unix(), 10), "resource": resource,
		"token_type": "Bearer", "client_id": principal,
	})
}

// getSecret is Key Vault's Get Secret: GET /secrets/{name}[/{version}]?api-version=...
func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		kvError(w, http.StatusBadRequest, "BadParameter", "The api-version query parameter is missing", "")
		return
	}
	auth := r.Header.Get("Authorization")
	challenge := fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`, s.TenantID, KeyVaultResource)
	if auth == "" {
		w.Header().Set("WWW-Authenticate", challenge)
		kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", "")
		return
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", challenge)
		kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10001: the Authorization header is not a Bearer token.", "")
		return
	}
	principal, err := s.VerifyToken(tok, KeyVaultResource)
	if err != nil {
		w.Header().Set("WWW-Authenticate", challenge)
		kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10032: "+err.Error(), "")
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/secrets/"), "/"), "/")
	name, ver := parts[0], ""
	if len(parts) > 1 {
		ver = parts[1]
	}
	if !s.granted(principal, name) {
		kvError(w, http.StatusForbidden, "Forbidden", fmt.Sprintf(
			"Caller is not authorized to perform action on resource.\r\nCaller: appid=%s\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: 'secrets/%s'\r\nAssignment: (not found)", principal, name),
			"ForbiddenByRbac")
		return
	}
	s.mu.Lock()
	sec := s.secrets[name]
	var v kvVersion
	found := false
	if sec != nil {
		if ver == "" {
			ver = sec.latest
		}
		v, found = sec.versions[ver]
	}
	s.mu.Unlock()
	if !found {
		kvError(w, http.StatusNotFound, "SecretNotFound", fmt.Sprintf("A secret with (name/id) %s was not found in this key vault.", path.Join(name, ver)), "")
		return
	}
	if !v.enabled {
		kvError(w, http.StatusForbidden, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"value": v.value,
		"id":    s.srv.URL + "/secrets/" + name + "/" + ver,
		"attributes": map[string]any{
			"enabled": true, "created": v.created.Unix(), "updated": v.created.Unix(),
			"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
		},
	})
}

func (s *Server) granted(principal, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.grants[principal] {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func kvError(w http.ResponseWriter, status int, code, msg, inner string) {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]string{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
