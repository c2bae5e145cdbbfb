package aws_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	ghaws "github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
)

const (
	trustAnchorARN = "arn:aws:rolesanywhere:us-east-2:111111111111:trust-anchor/4b7a9f3c-2d1e-4c5b-9a8f-7e6d5c4b3a21"
	profileARN     = "arn:aws:rolesanywhere:us-east-2:111111111111:profile/9c8b7a6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
)

var raRole = awsemu.RoleARN("GatehouseSecretsAccess")

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newCA makes a CA as reference 002 requires: X.509 v3, CA:TRUE, keyCertSign and cRLSign.
func newCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"Gatehouse Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key}
}

// issue signs a client certificate for key, valid from notBefore to notAfter, with the
// digitalSignature key usage.
func (ca testCA) issue(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "gatehouse-sidecar", Organization: []string{"Gatehouse Test"}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientFiles writes a key and a certificate for it and returns their paths.
func clientFiles(t *testing.T, ca testCA, key crypto.Signer, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.issue(t, key, notBefore, notAfter)
	return writePEM(t, filepath.Join(dir, "client.crt"), "CERTIFICATE", cert.Raw), writePEM(t, filepath.Join(dir, "client_private.key"), "PRIVATE KEY", p8)
}

func rolesAnywhereEmulator(t *testing.T, ca testCA) *awsemu.Server {
	t.Helper()
	emu := startEmulator(t)
	emu.AddTrustAnchor(trustAnchorARN, ca.cert)
	emu.AddProfile(profileARN, raRole)
	emu.Allow(raRole, "arn:aws:secretsmanager:us-east-2:111111111111:secret:*")
	emu.Allow(raRole, "arn:aws:secretsmanager:eu-west-1:111111111111:secret:team/*")
	return emu
}

func raConfig(emu *awsemu.Server, certFile, keyFile string) ghaws.Config {
	return ghaws.Config{Endpoint: emu.URL(), RolesAnywhere: &ghaws.RolesAnywhere{
		TrustAnchorARN: trustAnchorARN, ProfileARN: profileARN, RoleARN: raRole,
		Certificate: certFile, PrivateKey: keyFile,
	}}
}

func TestRolesAnywherePEMFiles(t *testing.T) {
	isolate(t)
	ca := newCA(t, "GatehouseTestCA")
	emu := rolesAnywhereEmulator(t, ca)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, key := range map[string]crypto.Signer{"rsa": rsaKey, "ecdsa": ecKey} {
		t.Run(name, func(t *testing.T) {
			before := emu.Calls("CreateSession")
			certFile, keyFile := clientFiles(t, ca, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
			runFetchCases(t, newClient(t, raConfig(emu, certFile, keyFile)), []fetchCase{
				{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
				{name: "json", ref: smRef(jsonARN, "", ""), want: jsonValue},
				{name: "nested json path", ref: smRef(nestedARN, "nested.password", ""), want: nestedValue},
				{name: "denied", ref: smRef("arn:aws:secretsmanager:eu-west-1:111111111111:secret:other-XyZaBc", "", ""),
					wantErr: "AccessDeniedException: User: arn:aws:sts::111111111111:assumed-role/GatehouseSecretsAccess"},
			})
			if got := emu.Calls("CreateSession") - before; got != 1 {
				t.Errorf("CreateSession calls = %d, want 1 (session cached while valid)", got)
			}
		})
	}
}

func TestRolesAnywhereRefreshesBeforeExpiry(t *testing.T) {
	isolate(t)
	ca := newCA(t, "GatehouseTestCA")
	emu := rolesAnywhereEmulator(t, ca)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The session cannot outlive the certificate: four minutes, inside the refresh window.
	certFile, keyFile := clientFiles(t, ca, key, time.Now().Add(-time.Hour), time.Now().Add(4*time.Minute))
	c := newClient(t, raConfig(emu, certFile, keyFile))
	for range 2 {
		if _, err := c.SecretsManager().Fetch(context.Background(), smRef(prodARN, "", ""), proxy.Target{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := emu.Calls("CreateSession"); got != 2 {
		t.Errorf("CreateSession calls = %d, want 2: credentials expiring within %s are refreshed", got, ghaws.ExpiryWindow)
	}
}

func TestRolesAnywhereRefused(t *testing.T) {
	isolate(t)
	ca := newCA(t, "GatehouseTestCA")
	emu := rolesAnywhereEmulator(t, ca)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	expiredCert, expiredKey := clientFiles(t, ca, key, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	other := newCA(t, "SomeoneElsesCA")
	foreignCert, foreignKey := clientFiles(t, other, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	goodCert, _ := clientFiles(t, ca, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, wrongKey := clientFiles(t, ca, otherKey, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))

	tests := []struct {
		name    string
		cfg     ghaws.Config
		wantErr []string
	}{
		{"expired certificate", raConfig(emu, expiredCert, expiredKey), []string{"AccessDeniedException", "Untrusted certificate", "expired"}},
		{"certificate from another CA", raConfig(emu, foreignCert, foreignKey), []string{"AccessDeniedException", "Untrusted certificate", "unknown authority"}},
		{"key does not match certificate", raConfig(emu, goodCert, wrongKey), []string{"AccessDeniedException", "signature we calculated does not match"}},
		{"role not in profile", func() ghaws.Config {
			c := raConfig(emu, goodCert, expiredKey)
			c.RolesAnywhere.RoleARN = awsemu.RoleARN("Admin")
			return c
		}(), []string{"AccessDeniedException", "is not in profile"}},
		{"unknown trust anchor", func() ghaws.Config {
			c := raConfig(emu, goodCert, expiredKey)
			c.RolesAnywhere.TrustAnchorARN = strings.Replace(trustAnchorARN, "4b7a", "0000", 1)
			return c
		}(), []string{"ResourceNotFoundException", "Trust anchor not found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := emu.Calls("GetSecretValue")
			_, err := newClient(t, tc.cfg).SecretsManager().Fetch(context.Background(), smRef(prodARN, "", ""), proxy.Target{})
			t.Logf("err: %v", err)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append([]string{"no usable AWS credentials", "roles anywhere CreateSession for arn:aws:iam::111111111111:role/"}, tc.wantErr...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q", w)
				}
			}
			if emu.Calls("GetSecretValue") != before {
				t.Error("GetSecretValue was called without a session")
			}
		})
	}
}

func TestRolesAnywhereConfigErrors(t *testing.T) {
	isolate(t)
	ca := newCA(t, "GatehouseTestCA")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	certFile, keyFile := clientFiles(t, ca, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	tests := []struct {
		name    string
		ra      ghaws.RolesAnywhere
		wantErr string
	}{
		{"no key", ghaws.RolesAnywhere{TrustAnchorARN: trustAnchorARN, ProfileARN: profileARN, RoleARN: raRole, Certificate: certFile},
			"roles anywhere: a private key file or PKCS#11 URI is required"},
		{"bad ARN", ghaws.RolesAnywhere{TrustAnchorARN: "anchor", ProfileARN: profileARN, RoleARN: raRole, Certificate: certFile, PrivateKey: keyFile},
			`roles anywhere: trust anchor ARN "anchor" is not an ARN`},
		{"missing key file", ghaws.RolesAnywhere{TrustAnchorARN: trustAnchorARN, ProfileARN: profileARN, RoleARN: raRole, Certificate: certFile, PrivateKey: "/nonexistent/key.pem"},
			"roles anywhere: load certificate and key (key /nonexistent/key.pem"},
		{"short session", ghaws.RolesAnywhere{TrustAnchorARN: trustAnchorARN, ProfileARN: profileARN, RoleARN: raRole, Certificate: certFile, PrivateKey: keyFile, SessionDuration: time.Minute},
			"roles anywhere: session duration 1m0s is outside 15m to 12h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ra := tc.ra
			_, err := ghaws.New(context.Background(), ghaws.Config{RolesAnywhere: &ra})
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

const softHSMLib = "/usr/lib/softhsm/libsofthsm2.so"

// softHSMToken creates a SoftHSM2 token "gatehouse" in a private directory holding key and cert
// (as reference 002's SoftHSM setup does), and points SOFTHSM2_CONF at it.
func softHSMToken(t *testing.T, key crypto.Signer, cert *x509.Certificate, pin string) {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", p8)
	certDER := filepath.Join(dir, "cert.der")
	if err := os.WriteFile(certDER, cert.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s (install softhsm2 and opensc)", name, strings.Join(args, " "), err, out)
		}
	}
	run("softhsm2-util", "--init-token", "--free", "--label", "gatehouse", "--pin", pin, "--so-pin", "10293847")
	run("softhsm2-util", "--import", keyFile, "--token", "gatehouse", "--label", "client-key", "--id", "01", "--pin", pin)
	run("pkcs11-tool", "--module", softHSMLib, "--token-label", "gatehouse", "--login", "--pin", pin,
		"--write-object", certDER, "--type", "cert", "--id", "01", "--label", "client-cert")
	// The PEM copy of the key must not be what the test uses.
	os.Remove(keyFile)
}

func TestRolesAnywhereSoftHSM(t *testing.T) {
	isolate(t)
	ca := newCA(t, "GatehouseTestCA")
	emu := rolesAnywhereEmulator(t, ca)
	const pin = "468135"
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	cert := ca.issue(t, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	softHSMToken(t, key, cert, pin)

	cfg := raConfig(emu, "pkcs11:token=gatehouse;object=client-cert;type=cert", "pkcs11:token=gatehouse;object=client-key;type=private")
	cfg.RolesAnywhere.PKCS11Library = softHSMLib
	cfg.RolesAnywhere.PKCS11PIN = pin
	t.Run("pin in config", func(t *testing.T) {
		runFetchCases(t, newClient(t, cfg), []fetchCase{
			{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue},
			{name: "nested json path", ref: smRef(nestedARN, "nested.password", ""), want: nestedValue},
		})
	})
	t.Run("pin in URI, certificate from a file", func(t *testing.T) {
		c := cfg
		ra := *cfg.RolesAnywhere
		ra.PKCS11PIN = ""
		ra.Certificate = writePEM(t, filepath.Join(t.TempDir(), "client.crt"), "CERTIFICATE", cert.Raw)
		ra.PrivateKey = "pkcs11:token=gatehouse;object=client-key;type=private?pin-value=" + pin
		c.RolesAnywhere = &ra
		runFetchCases(t, newClient(t, c), []fetchCase{{name: "plaintext", ref: smRef(prodARN, "", ""), want: plainValue}})
	})
	t.Run("wrong pin", func(t *testing.T) {
		c := cfg
		ra := *cfg.RolesAnywhere
		ra.PKCS11PIN = "000000"
		c.RolesAnywhere = &ra
		_, err := ghaws.New(context.Background(), c)
		t.Logf("err: %v", err)
		if err == nil {
			t.Fatal("New with a wrong PIN: no error")
		}
		if strings.Contains(err.Error(), "000000") {
			t.Errorf("error shows the PIN: %v", err)
		}
	})
}
