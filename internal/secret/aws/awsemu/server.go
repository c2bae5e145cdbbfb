package awsemu

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"time"
)

// Account is the AWS account ID the emulator's principals belong to.
const Account = "111111111111"

// Server emulates the AWS APIs Gatehouse calls, on one HTTP endpoint: Secrets Manager
// GetSecretValue, STS AssumeRoleWithWebIdentity, IAM Roles Anywhere CreateSession and an ECS
// container-credentials endpoint. Point an SDK client at URL with a base-endpoint override.
//
// A Server is configured with its Add/Put/Allow methods before or while it serves; they are safe
// for concurrent use.
type Server struct {
	// Now is the clock used for signature dates, certificate validity and credential expiry;
	// nil means time.Now.
	Now func() time.Time

	mu           sync.Mutex
	keys         map[string]*accessKey // access key ID -> key
	grants       map[string][]string   // principal ARN -> secret ARN patterns
	secrets      map[string]*secret    // secret ARN -> secret
	trustAnchors map[string]*x509.Certificate
	profiles     map[string][]string // profile ARN -> role ARNs
	webTokens    map[string]string   // web identity token -> role ARN
	ecsAuth      string
	ecsRole      string
	calls        map[string]int

	srv *httptest.Server
}

type accessKey struct {
	id, secret, sessionToken string
	principal                string // user or assumed-role ARN that may be granted access
	role                     string // role ARN for temporary credentials, "" for a user
	expires                  time.Time
}

type secret struct {
	arn      string
	versions map[string]*version // version ID -> version
	stages   map[string]string   // stage -> version ID
}

type version struct {
	id     string
	str    *string
	binary []byte
}

// New returns an emulator that is not yet serving.
func New() *Server {
	return &Server{
		keys:         map[string]*accessKey{},
		grants:       map[string][]string{},
		secrets:      map[string]*secret{},
		trustAnchors: map[string]*x509.Certificate{},
		profiles:     map[string][]string{},
		webTokens:    map[string]string{},
		calls:        map[string]int{},
	}
}

// Start serves on a loopback port.
func (s *Server) Start() {
	s.srv = httptest.NewServer(s)
}

// URL is the base URL of a started server, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server and waits for its requests to finish.
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

// Calls reports how many requests reached an operation ("GetSecretValue", "CreateSession",
// "AssumeRoleWithWebIdentity", "ContainerCredentials"), authenticated or not.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// UserARN is the ARN of the IAM user name.
func UserARN(name string) string { return "arn:aws:iam::" + Account + ":user/" + name }

// RoleARN is the ARN of the IAM role name.
func RoleARN(name string) string { return "arn:aws:iam::" + Account + ":role/" + name }

// AddUser registers an IAM user with a long-term access key and returns the user's ARN.
func (s *Server) AddUser(name, accessKeyID, secretAccessKey string) string {
	arn := UserARN(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[accessKeyID] = &accessKey{id: accessKeyID, secret: secretAccessKey, principal: arn}
	return arn
}

// AddTemporaryKey registers temporary credentials for role (as IMDS or another issuer outside the
// emulator hands them out), valid until expires.
func (s *Server) AddTemporaryKey(roleARN, accessKeyID, secretAccessKey, sessionToken string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[accessKeyID] = &accessKey{id: accessKeyID, secret: secretAccessKey, sessionToken: sessionToken,
		principal: roleARN, role: roleARN, expires: expires}
}

// Credentials are temporary credentials the emulator issued.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expires                                    time.Time
}

// IssueRoleCredentials mints temporary credentials for roleARN valid for ttl.
func (s *Server) IssueRoleCredentials(roleARN string, ttl time.Duration) Credentials {
	c := Credentials{
		AccessKeyID:     "ASIA" + strings.ToUpper(randomHex(8)),
		SecretAccessKey: randomHex(20),
		SessionToken:    base64.StdEncoding.EncodeToString([]byte("session:" + randomHex(24))),
		Expires:         s.now().Add(ttl).UTC().Truncate(time.Second),
	}
	s.AddTemporaryKey(roleARN, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expires)
	return c
}

// Allow lets principal (a user or role ARN) call secretsmanager:GetSecretValue on secrets whose
// ARN matches pattern, where '*' matches any run of characters — the shape of an IAM policy's
// Resource, without the rest of the policy language.
func (s *Server) Allow(principal, pattern string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[principal] = append(s.grants[principal], pattern)
}

// PutSecretString stores a string version of the secret arn and moves the given stages
// (AWSCURRENT when none) to it. It returns the version ID.
func (s *Server) PutSecretString(arn, value string, stages ...string) string {
	return s.put(arn, &version{str: &value}, stages)
}

// PutSecretBinary stores a binary version of the secret arn, as PutSecretString.
func (s *Server) PutSecretBinary(arn string, value []byte, stages ...string) string {
	return s.put(arn, &version{binary: value}, stages)
}

func (s *Server) put(arn string, v *version, stages []string) string {
	if len(stages) == 0 {
		stages = []string{"AWSCURRENT"}
	}
	v.id = randomUUID()
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[arn]
	if sec == nil {
		sec = &secret{arn: arn, versions: map[string]*version{}, stages: map[string]string{}}
		s.secrets[arn] = sec
	}
	sec.versions[v.id] = v
	for _, st := range stages {
		sec.stages[st] = v.id
	}
	return v.id
}

// ServeHTTP routes by what the SDKs send: X-Amz-Target for JSON protocols, Action for STS's
// query protocol, the path for Roles Anywhere and ECS.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") == "secretsmanager.GetSecretValue":
		s.count("GetSecretValue")
		s.getSecretValue(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/sessions":
		s.count("CreateSession")
		s.createSession(w, r)
	case r.Method == http.MethodGet && r.URL.Path == ecsPath:
		s.count("ContainerCredentials")
		s.containerCredentials(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		s.sts(w, r)
	default:
		jsonError(w, http.StatusBadRequest, "UnknownOperationException", "the emulator does not implement "+r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Amz-Target"))
	}
}

func (s *Server) count(op string) {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
}

// authenticate verifies a SigV4 HMAC-signed request for service and returns the caller's key.
// The error is an API error code and message.
func (s *Server) authenticate(r *http.Request, service string, body []byte) (*accessKey, *apiError) {
	a, err := parseAuthorization(r)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "IncompleteSignatureException", err.Error()}
	}
	if a.algorithm != hmacAlgorithm {
		return nil, &apiError{http.StatusBadRequest, "IncompleteSignatureException", "unsupported signing algorithm " + a.algorithm}
	}
	if a.service != service {
		return nil, &apiError{http.StatusBadRequest, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service)}
	}
	if err := a.checkTime(s.now()); err != nil {
		return nil, &apiError{http.StatusBadRequest, "InvalidSignatureException", err.Error()}
	}
	s.mu.Lock()
	k := s.keys[a.credential]
	s.mu.Unlock()
	if k == nil {
		return nil, &apiError{http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if k.sessionToken != r.Header.Get("X-Amz-Security-Token") {
		return nil, &apiError{http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if k.sessionToken != "" && !contains(a.signedHeaders, "x-amz-security-token") {
		return nil, &apiError{http.StatusBadRequest, "IncompleteSignatureException", "x-amz-security-token must be signed"}
	}
	if !k.expires.IsZero() && !s.now().Before(k.expires) {
		return nil, &apiError{http.StatusBadRequest, "ExpiredTokenException", "The security token included in the request is expired"}
	}
	payload := hashHex(body)
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payload {
		return nil, &apiError{http.StatusBadRequest, "InvalidSignatureException", "X-Amz-Content-Sha256 does not match the body"}
	}
	cr, err := canonicalRequest(r, r.URL.EscapedPath(), r.URL.Query(), a.signedHeaders, payload)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "InvalidSignatureException", err.Error()}
	}
	want := hmacSignature(k.secret, a, stringToSign(a.algorithm, a.amzDate, a.scope(), cr))
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		return nil, &apiError{http.StatusForbidden, "InvalidSignatureException", errSignature.Error()}
	}
	return k, nil
}

type apiError struct {
	status  int
	code    string
	message string
}

func jsonError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}

func (s *Server) getSecretValue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "InvalidRequestException", err.Error())
		return
	}
	k, aerr := s.authenticate(r, "secretsmanager", body)
	if aerr != nil {
		jsonError(w, aerr.status, aerr.code, aerr.message)
		return
	}
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionID    string `json:"VersionId"`
		VersionStage string `json:"VersionStage"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.SecretID == "" {
		jsonError(w, http.StatusBadRequest, "InvalidParameterException", "SecretId is required")
		return
	}
	scopeRegion := credentialRegion(r)
	if region := arnRegion(in.SecretID); region != "" && region != scopeRegion {
		// A regional endpoint only holds its own region's secrets.
		jsonError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	if !s.allowed(k.principal, in.SecretID) {
		jsonError(w, http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
			"User: %s is not authorized to perform: secretsmanager:GetSecretValue on resource: %s because no identity-based policy allows the secretsmanager:GetSecretValue action",
			s.callerARN(k), in.SecretID))
		return
	}
	s.mu.Lock()
	sec := s.secrets[in.SecretID]
	var v *version
	var stages []string
	if sec != nil {
		id := in.VersionID
		if id == "" {
			stage := in.VersionStage
			if stage == "" {
				stage = "AWSCURRENT"
			}
			id = sec.stages[stage]
		}
		v = sec.versions[id]
		if v != nil {
			for st, vid := range sec.stages {
				if vid == v.id {
					stages = append(stages, st)
				}
			}
		}
	}
	s.mu.Unlock()
	if sec == nil {
		jsonError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	if v == nil {
		jsonError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: "+in.VersionStage)
		return
	}
	out := map[string]any{
		"ARN":           sec.arn,
		"Name":          secretName(sec.arn),
		"VersionId":     v.id,
		"VersionStages": stages,
		"CreatedDate":   float64(s.now().Unix()),
	}
	if v.str != nil {
		out["SecretString"] = *v.str
	} else {
		out["SecretBinary"] = v.binary // encoding/json writes base64, as the service does
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func (s *Server) allowed(principal, arn string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.grants[principal] {
		if ok, _ := path.Match(strings.ReplaceAll(p, "/", "\x00"), strings.ReplaceAll(arn, "/", "\x00")); ok {
			return true
		}
	}
	return false
}

// callerARN is the ARN in an AccessDenied message: the user, or the assumed role's session.
func (s *Server) callerARN(k *accessKey) string {
	if k.role == "" {
		return k.principal
	}
	return strings.Replace(strings.Replace(k.role, ":iam::", ":sts::", 1), ":role/", ":assumed-role/", 1) + "/gatehouse"
}

func credentialRegion(r *http.Request) string {
	a, err := parseAuthorization(r)
	if err != nil {
		return ""
	}
	return a.region
}

// arnRegion returns the region field of an ARN, or "" for a name.
func arnRegion(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

func secretName(arn string) string {
	parts := strings.SplitN(arn, ":", 7)
	if len(parts) < 7 {
		return arn
	}
	name := parts[6]
	// Secrets Manager appends "-" and six random characters to the name.
	if i := strings.LastIndexByte(name, '-'); i > 0 && len(name)-i == 7 {
		name = name[:i]
	}
	return name
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
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
