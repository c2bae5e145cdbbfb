package awsemu

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ecsPath is where the container-credentials endpoint is served; set
// AWS_CONTAINER_CREDENTIALS_FULL_URI to URL()+ECSPath.
const ecsPath = "/ecs/credentials"

// ECSPath is the path of the container-credentials endpoint.
const ECSPath = ecsPath

// SetContainerCredentials makes the ECS endpoint hand out credentials for roleARN to callers
// presenting authToken in their Authorization header (AWS_CONTAINER_AUTHORIZATION_TOKEN).
func (s *Server) SetContainerCredentials(authToken, roleARN string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ecsAuth, s.ecsRole = authToken, roleARN
}

func (s *Server) containerCredentials(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	auth, role := s.ecsAuth, s.ecsRole
	s.mu.Unlock()
	if role == "" || auth == "" || !hmac.Equal([]byte(r.Header.Get("Authorization")), []byte(auth)) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"code": "AccessDenied", "message": "invalid authorization token"})
		return
	}
	c := s.IssueRoleCredentials(role, time.Hour)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"AccessKeyId": c.AccessKeyID, "SecretAccessKey": c.SecretAccessKey, "Token": c.SessionToken,
		"Expiration": c.Expires.Format(time.RFC3339), "RoleArn": role,
	})
}

// AddWebIdentityToken lets AssumeRoleWithWebIdentity exchange token for credentials of roleARN.
// The token is compared as an opaque string; its JWT signature and claims are not checked.
func (s *Server) AddWebIdentityToken(token, roleARN string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webTokens[token] = roleARN
}

func (s *Server) sts(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		stsError(w, "InvalidParameterValue", err.Error())
		return
	}
	action := r.PostForm.Get("Action")
	s.count(action)
	if action != "AssumeRoleWithWebIdentity" {
		stsError(w, "InvalidAction", "the emulator does not implement "+action)
		return
	}
	s.mu.Lock()
	role, ok := s.webTokens[r.PostForm.Get("WebIdentityToken")]
	s.mu.Unlock()
	if !ok {
		stsError(w, "InvalidIdentityToken", "The web identity token that was passed could not be validated by AWS.")
		return
	}
	if role != r.PostForm.Get("RoleArn") {
		stsError(w, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
		return
	}
	ttl := time.Hour
	if d, err := strconv.Atoi(r.PostForm.Get("DurationSeconds")); err == nil && d > 0 {
		ttl = time.Duration(d) * time.Second
	}
	c := s.IssueRoleCredentials(role, ttl)
	type creds struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	}
	var out struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleWithWebIdentityResponse"`
		Result  struct {
			Credentials     creds `xml:"Credentials"`
			AssumedRoleUser struct {
				Arn           string `xml:"Arn"`
				AssumedRoleID string `xml:"AssumedRoleId"`
			} `xml:"AssumedRoleUser"`
		} `xml:"AssumeRoleWithWebIdentityResult"`
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	out.Result.Credentials = creds{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expires.Format(time.RFC3339)}
	out.Result.AssumedRoleUser.Arn = (&Server{}).callerARN(&accessKey{role: role})
	out.Result.AssumedRoleUser.AssumedRoleID = "AROA" + strings.ToUpper(randomHex(8)) + ":gatehouse"
	out.RequestID = randomUUID()
	w.Header().Set("Content-Type", "text/xml")
	xml.NewEncoder(w).Encode(out)
}

func stsError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusBadRequest)
	var out struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
		Error   struct {
			Type    string `xml:"Type"`
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Error"`
		RequestID string `xml:"RequestId"`
	}
	out.Error.Type, out.Error.Code, out.Error.Message, out.RequestID = "Sender", code, msg, randomUUID()
	xml.NewEncoder(w).Encode(out)
}

// AddTrustAnchor registers a Roles Anywhere trust anchor whose certificate bundle is ca.
func (s *Server) AddTrustAnchor(arn string, ca *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trustAnchors[arn] = ca
}

// AddProfile registers a Roles Anywhere profile that may hand out sessions for roleARNs.
func (s *Server) AddProfile(arn string, roleARNs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.profiles[arn] = append(s.profiles[arn], roleARNs...)
}

// createSession is IAM Roles Anywhere's CreateSession: the request is signed with the private key
// of an X.509 certificate (SigV4-X509) instead of an access key.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		restError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	var in struct {
		Cert            string `json:"cert"`
		ProfileARN      string `json:"-"`
		RoleARN         string `json:"-"`
		TrustAnchorARN  string `json:"-"`
		DurationSeconds int    `json:"durationSeconds"`
		RoleSessionName string `json:"roleSessionName"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		restError(w, http.StatusBadRequest, "ValidationException", "request body is not JSON")
		return
	}
	// The ARNs travel in the query string (the SDK's REST binding), the certificate in X-Amz-X509.
	q := r.URL.Query()
	in.ProfileARN, in.RoleARN, in.TrustAnchorARN = q.Get("profileArn"), q.Get("roleArn"), q.Get("trustAnchorArn")
	cert, err := s.verifyX509Signature(r, body)
	if err != nil {
		restError(w, http.StatusForbidden, "AccessDeniedException", err.Error())
		return
	}
	if in.Cert != "" && in.Cert != base64.StdEncoding.EncodeToString(cert.Raw) {
		restError(w, http.StatusForbidden, "AccessDeniedException", "the certificate in the body is not the signing certificate")
		return
	}
	s.mu.Lock()
	ca := s.trustAnchors[in.TrustAnchorARN]
	roles, profileOK := s.profiles[in.ProfileARN]
	s.mu.Unlock()
	if ca == nil {
		restError(w, http.StatusNotFound, "ResourceNotFoundException", "Trust anchor not found: "+in.TrustAnchorARN)
		return
	}
	if !profileOK {
		restError(w, http.StatusNotFound, "ResourceNotFoundException", "Profile not found: "+in.ProfileARN)
		return
	}
	if !contains(roles, in.RoleARN) {
		restError(w, http.StatusForbidden, "AccessDeniedException", "Role "+in.RoleARN+" is not in profile "+in.ProfileARN)
		return
	}
	if err := s.verifyChain(cert, r.Header.Get("X-Amz-X509-Chain"), ca); err != nil {
		restError(w, http.StatusForbidden, "AccessDeniedException", "Untrusted certificate: "+err.Error())
		return
	}
	ttl := time.Hour
	if in.DurationSeconds != 0 {
		if in.DurationSeconds < 900 || in.DurationSeconds > 43200 {
			restError(w, http.StatusBadRequest, "ValidationException", "durationSeconds must be between 900 and 43200")
			return
		}
		ttl = time.Duration(in.DurationSeconds) * time.Second
	}
	if left := cert.NotAfter.Sub(s.now()); left < ttl {
		ttl = left // a session never outlives its certificate
	}
	c := s.IssueRoleCredentials(in.RoleARN, ttl)
	out := map[string]any{
		"credentialSet": []any{map[string]any{
			"assumedRoleUser": map[string]string{
				"arn":           (&Server{}).callerARN(&accessKey{role: in.RoleARN}),
				"assumedRoleId": "AROA" + strings.ToUpper(randomHex(8)) + ":" + cert.SerialNumber.String(),
			},
			"credentials": map[string]string{
				"accessKeyId": c.AccessKeyID, "secretAccessKey": c.SecretAccessKey,
				"sessionToken": c.SessionToken, "expiration": c.Expires.Format(time.RFC3339),
			},
			"packedPolicySize": 0,
			"roleArn":          in.RoleARN,
			"sourceIdentity":   cert.Subject.String(),
		}},
		"subjectArn": strings.Replace(in.TrustAnchorARN, ":trust-anchor/", ":subject/", 1),
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
}

func restError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// verifyX509Signature checks a SigV4-X509 request: the certificate in X-Amz-X509 names the
// serial in the credential scope, and its public key verifies the signature over the canonical
// request.
func (s *Server) verifyX509Signature(r *http.Request, body []byte) (*x509.Certificate, error) {
	a, err := parseAuthorization(r)
	if err != nil {
		return nil, err
	}
	if a.service != "rolesanywhere" {
		return nil, fmt.Errorf("credential scoped to %s, not rolesanywhere", a.service)
	}
	if err := a.checkTime(s.now()); err != nil {
		return nil, err
	}
	der, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Amz-X509"))
	if err != nil || len(der) == 0 {
		return nil, errors.New("missing or malformed X-Amz-X509 header")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("X-Amz-X509 does not parse: %v", err)
	}
	if cert.SerialNumber.String() != a.credential {
		return nil, errors.New("the credential's serial number is not the certificate's")
	}
	if !contains(a.signedHeaders, "x-amz-x509") || !contains(a.signedHeaders, "host") || !contains(a.signedHeaders, "x-amz-date") {
		return nil, errors.New("host, x-amz-date and x-amz-x509 must be signed")
	}
	cr, err := canonicalRequest(r, r.URL.EscapedPath(), r.URL.Query(), a.signedHeaders, hashHex(body))
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(stringToSign(a.algorithm, a.amzDate, a.scope(), cr)))
	sig, err := hex.DecodeString(a.signature)
	if err != nil {
		return nil, errors.New("signature is not hexadecimal")
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if a.algorithm != "AWS4-X509-RSA-SHA256" {
			return nil, fmt.Errorf("algorithm %s does not fit an RSA key", a.algorithm)
		}
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
			return nil, errSignature
		}
	case *ecdsa.PublicKey:
		if a.algorithm != "AWS4-X509-ECDSA-SHA256" {
			return nil, fmt.Errorf("algorithm %s does not fit an EC key", a.algorithm)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return nil, errSignature
		}
	default:
		return nil, fmt.Errorf("unsupported public key type %T", cert.PublicKey)
	}
	return cert, nil
}

// verifyChain checks what Roles Anywhere requires of an end-entity certificate: it chains to the
// trust anchor's CA (through the given intermediates), is within its validity period now, and
// may sign (digitalSignature).
func (s *Server) verifyChain(cert *x509.Certificate, chainHeader string, ca *x509.Certificate) error {
	if cert.Version != 3 {
		return errors.New("the certificate is not X.509 v3")
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("the certificate's key usage does not include digitalSignature")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	if chainHeader != "" {
		for _, b64 := range strings.Split(chainHeader, ",") {
			der, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return errors.New("X-Amz-X509-Chain is malformed")
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("X-Amz-X509-Chain does not parse: %v", err)
			}
			inter.AddCert(c)
		}
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// VerifyRDSAuthToken checks an RDS IAM authentication token as RDS does when a client presents it
// as its password: a SigV4 presigned "connect" URL for endpoint (host:port) and dbUser, scoped to
// rds-db in region, signed by a key the emulator knows, and not expired (at most 15 minutes).
func (s *Server) VerifyRDSAuthToken(token, endpoint, region, dbUser string) error {
	u, err := url.Parse("https://" + token)
	if err != nil {
		return fmt.Errorf("token is not a presigned URL: %v", err)
	}
	if u.Host != endpoint {
		return fmt.Errorf("token is for %s, not %s", u.Host, endpoint)
	}
	q := u.Query()
	if q.Get("Action") != "connect" || q.Get("DBUser") != dbUser {
		return fmt.Errorf("token is not a connect token for user %s", dbUser)
	}
	if q.Get("X-Amz-Algorithm") != hmacAlgorithm {
		return errors.New("token is not signed with AWS4-HMAC-SHA256")
	}
	a := sigv4{algorithm: hmacAlgorithm, signedHeaders: strings.Split(q.Get("X-Amz-SignedHeaders"), ";"), signature: q.Get("X-Amz-Signature")}
	if err := a.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return err
	}
	if a.service != "rds-db" || a.region != region {
		return fmt.Errorf("token is scoped to %s in %s, not rds-db in %s", a.service, a.region, region)
	}
	if a.amzDate, err = time.Parse(amzDateFormat, q.Get("X-Amz-Date")); err != nil {
		return errors.New("token has no valid X-Amz-Date")
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires <= 0 || time.Duration(expires)*time.Second > maxPresignLife {
		return errors.New("token's X-Amz-Expires must be 1 to 900 seconds")
	}
	now := s.now()
	if now.After(a.amzDate.Add(time.Duration(expires)*time.Second)) || a.amzDate.After(now.Add(maxClockSkew)) {
		return errors.New("token has expired or is dated in the future")
	}
	s.mu.Lock()
	k := s.keys[a.credential]
	s.mu.Unlock()
	if k == nil || k.sessionToken != q.Get("X-Amz-Security-Token") {
		return errors.New("token was signed with an access key the emulator does not know")
	}
	if !k.expires.IsZero() && !now.Before(k.expires) {
		return errors.New("token was signed with expired temporary credentials")
	}
	q.Del("X-Amz-Signature")
	r := &http.Request{Method: http.MethodGet, Host: endpoint, Header: http.Header{}}
	cr, err := canonicalRequest(r, u.EscapedPath(), q, a.signedHeaders, hashHex(nil))
	if err != nil {
		return err
	}
	if want := hmacSignature(k.secret, a, stringToSign(a.algorithm, a.amzDate, a.scope(), cr)); !hmac.Equal([]byte(want), []byte(a.signature)) {
		return errSignature
	}
	return nil
}
