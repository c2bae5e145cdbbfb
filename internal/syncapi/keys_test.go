package syncapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

func TestWriteKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	priv, pub, err := WriteKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(priv)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("private key mode = %o, want 600", mode)
	}
	key, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	data, err := os.ReadFile(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("private key is not PKCS#8 PEM: %.40q", data)
	}
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gatehouse.ParseRSAPublicKey(string(pubPEM))
	if err != nil {
		t.Fatalf("public key does not parse as the control plane parses it: %v", err)
	}
	if !pk.Equal(&key.PublicKey) {
		t.Error("public.pem does not match private.pem")
	}

	if _, _, err := WriteKeyPair(dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second WriteKeyPair = %v; want a refusal to overwrite", err)
	}
	after, _ := os.ReadFile(priv)
	if string(after) != string(data) {
		t.Error("existing private key was changed")
	}
}

// The testdata keys were made with the reference's commands:
//
//	openssl genpkey -out openssl_pkcs8.pem -algorithm RSA -pkeyopt rsa_keygen_bits:2048
//	openssl rsa -in openssl_pkcs8.pem -traditional -out openssl_pkcs1.pem
//	openssl rsa -in openssl_pkcs8.pem -pubout -out openssl_public.pem
func TestLoadOpenSSLKeys(t *testing.T) {
	pubPEM, err := os.ReadFile("testdata/openssl_public.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := gatehouse.ParseRSAPublicKey(string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"testdata/openssl_pkcs8.pem", "testdata/openssl_pkcs1.pem"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			k, err := LoadPrivateKey(f)
			if err != nil {
				t.Fatal(err)
			}
			if !k.PublicKey.Equal(pub) {
				t.Error("key does not match openssl_public.pem")
			}
		})
	}
}

func TestParsePrivateKeyErrors(t *testing.T) {
	pubPEM, err := os.ReadFile("testdata/openssl_public.pem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"not pem", "hello", "no PEM block"},
		{"public key", string(pubPEM), "public key"},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
		{"other", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "CERTIFICATE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKey([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePrivateKey = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
