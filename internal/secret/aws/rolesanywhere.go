package aws

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	helper "github.com/aws/rolesanywhere-credential-helper/aws_signing_helper"
)

// RolesAnywhere configures IAM Roles Anywhere: an X.509 certificate and its private key are
// exchanged for temporary credentials of RoleARN, refreshed before they expire.
type RolesAnywhere struct {
	TrustAnchorARN string
	ProfileARN     string
	RoleARN        string
	// Certificate is a PEM certificate file, or a PKCS#11 URI
	// ("pkcs11:token=gatehouse;object=client-cert;type=cert").
	Certificate string
	// CertificateChain is an optional PEM file of intermediate CA certificates.
	CertificateChain string
	// PrivateKey is a PEM private key file (PKCS#1, PKCS#8 or SEC 1), or a PKCS#11 URI
	// ("pkcs11:token=gatehouse;object=client-key;type=private").
	PrivateKey string
	// PKCS11Library is the PKCS#11 module; empty means p11-kit-proxy.so. For SoftHSM2:
	// /usr/lib/softhsm/libsofthsm2.so.
	PKCS11Library string
	// PKCS11PIN is the token's user PIN, added to the URIs as pin-value when they carry none.
	PKCS11PIN string
	// Region is Roles Anywhere's region; empty means the trust anchor ARN's.
	Region string
	// Endpoint overrides the Roles Anywhere endpoint (a VPC endpoint or an emulator); empty
	// means Config.Endpoint, then rolesanywhere.REGION.amazonaws.com. The credential helper makes
	// this call with its own HTTP client (system CA roots, HTTPS_PROXY not used), not
	// Config.HTTPClient.
	Endpoint string
	// SessionDuration is how long each session lasts; zero means one hour (15 min to 12 h).
	SessionDuration time.Duration
}

// rolesAnywhere is an aws.CredentialsProvider over the credential helper library, which signs
// CreateSession with the certificate's key (SigV4-X509).
type rolesAnywhere struct {
	opts helper.CredentialsOpts

	mu     sync.Mutex // one CreateSession at a time: a PKCS#11 session is not shared
	signer *safeSigner
	alg    string
}

func newRolesAnywhere(ra RolesAnywhere, endpoint string) (*rolesAnywhere, error) {
	for name, v := range map[string]string{"trust anchor ARN": ra.TrustAnchorARN, "profile ARN": ra.ProfileARN, "role ARN": ra.RoleARN} {
		if _, err := arn.Parse(v); err != nil {
			return nil, fmt.Errorf("roles anywhere: %s %q is not an ARN", name, v)
		}
	}
	if ra.PrivateKey == "" {
		return nil, errors.New("roles anywhere: a private key file or PKCS#11 URI is required")
	}
	if ra.Certificate == "" {
		return nil, errors.New("roles anywhere: a certificate (PEM file or PKCS#11 URI) is required")
	}
	if ra.Endpoint == "" {
		ra.Endpoint = endpoint
	}
	dur := ra.SessionDuration
	if dur == 0 {
		dur = time.Hour
	}
	if dur < 15*time.Minute || dur > 12*time.Hour {
		return nil, fmt.Errorf("roles anywhere: session duration %s is outside 15m to 12h", dur)
	}
	opts := helper.CredentialsOpts{
		PrivateKeyId:        withPIN(ra.PrivateKey, ra.PKCS11PIN),
		CertificateId:       withPIN(ra.Certificate, ra.PKCS11PIN),
		CertificateBundleId: ra.CertificateChain,
		RoleArn:             ra.RoleARN,
		ProfileArnStr:       ra.ProfileARN,
		TrustAnchorArnStr:   ra.TrustAnchorARN,
		SessionDuration:     int(dur / time.Second),
		Region:              ra.Region,
		Endpoint:            ra.Endpoint,
		LibPkcs11:           ra.PKCS11Library,
		Version:             "gatehouse",
	}
	s, alg, err := helper.GetSigner(&opts)
	if err != nil {
		return nil, fmt.Errorf("roles anywhere: load certificate and key (%s): %w", describeKey(ra), err)
	}
	return &rolesAnywhere{opts: opts, signer: &safeSigner{Signer: s}, alg: alg}, nil
}

// describeKey names where the key lives without the PIN.
func describeKey(ra RolesAnywhere) string {
	if strings.HasPrefix(ra.PrivateKey, "pkcs11:") {
		return "PKCS#11 " + stripPIN(ra.PrivateKey)
	}
	return "key " + ra.PrivateKey + ", certificate " + ra.Certificate
}

func withPIN(uri, pin string) string {
	if pin == "" || !strings.HasPrefix(uri, "pkcs11:") || strings.Contains(uri, "pin-value=") {
		return uri
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + "pin-value=" + url.QueryEscape(pin)
}

func stripPIN(uri string) string {
	base, q, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	var keep []string
	for _, kv := range strings.Split(q, "&") {
		if !strings.HasPrefix(kv, "pin-value=") {
			keep = append(keep, kv)
		}
	}
	if len(keep) == 0 {
		return base
	}
	return base + "?" + strings.Join(keep, "&")
}

func (p *rolesAnywhere) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.signer.Close()
}

// Retrieve calls CreateSession. The library call takes no context, so it runs on its own
// goroutine and a cancelled caller stops waiting for it; it ends with the HTTP request.
func (p *rolesAnywhere) Retrieve(ctx context.Context) (awssdk.Credentials, error) {
	type result struct {
		out helper.CredentialProcessOutput
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		opts := p.opts // GenerateCredentials writes Region into its argument
		p.signer.err = nil
		out, err := helper.GenerateCredentials(&opts, p.signer, p.alg)
		if p.signer.err != nil {
			err = fmt.Errorf("sign CreateSession with the certificate's key: %w", p.signer.err)
		}
		ch <- result{out, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return awssdk.Credentials{}, ctx.Err()
	}
	if r.err != nil {
		return awssdk.Credentials{}, fmt.Errorf("roles anywhere CreateSession for %s: %w", p.opts.RoleArn, shorten(r.err, rolesAnywhereHints))
	}
	exp, err := time.Parse(time.RFC3339, r.out.Expiration)
	if err != nil {
		return awssdk.Credentials{}, fmt.Errorf("roles anywhere: session expiration %q does not parse", r.out.Expiration)
	}
	return awssdk.Credentials{
		AccessKeyID: r.out.AccessKeyId, SecretAccessKey: r.out.SecretAccessKey, SessionToken: r.out.SessionToken,
		Source: "RolesAnywhere", CanExpire: true, Expires: exp,
	}, nil
}

var rolesAnywhereHints = map[string]string{
	"AccessDeniedException":     "check that the certificate is valid now, chains to the trust anchor's CA, and that the profile includes the role",
	"ResourceNotFoundException": "check the trust anchor and profile ARNs and the region",
}

// safeSigner keeps a signing failure from ending the process: the library exits when Sign
// fails, so the error is kept here, an empty signature goes out (and is refused), and Retrieve
// reports the kept error.
type safeSigner struct {
	helper.Signer
	err error
}

func (s *safeSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(rand, digest, opts)
	if err != nil {
		s.err = err
		return []byte{}, nil
	}
	return sig, nil
}
