package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// handshake runs a TLS handshake between srvCfg and a client that trusts the server's own
// certificate and expects serverName.
func handshake(t *testing.T, srvCfg *tls.Config, serverName string) error {
	t.Helper()
	roots := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(srvCfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- tls.Server(c, srvCfg).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cerr := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: serverName}).Handshake()
	c.Close()
	<-errc
	return cerr
}

func TestSelfSignedTLS(t *testing.T) {
	cfg, fp, err := proxy.SelfSignedTLS([]string{"sidecar.example.com", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if got := proxy.Fingerprint(leaf.Raw); got != fp || len(fp) != 95 || strings.ToUpper(fp) != fp {
		t.Errorf("fingerprint %q", fp)
	}
	for _, name := range []string{"sidecar.example.com", "127.0.0.1"} {
		if err := handshake(t, cfg, name); err != nil {
			t.Errorf("handshake as %s: %v", name, err)
		}
	}
	if err := handshake(t, cfg, "other.example.com"); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
}

func TestLoadTLS(t *testing.T) {
	gen, _, err := proxy.SelfSignedTLS(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(gen.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gen.Certificates[0].Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cfg, err := proxy.LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cfg, "localhost"); err != nil {
		t.Errorf("handshake: %v", err)
	}
	_, err = proxy.LoadTLS(filepath.Join(dir, "missing.crt"), keyFile)
	if err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing certificate: %v", err)
	}
}
