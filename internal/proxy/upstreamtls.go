package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/gatehousedb/gatehouse"
)

// UpstreamTLS builds the client TLS configuration an engine uses to reach a repository, per the
// repository's tls_mode, with libpq's meanings for every protocol: require checks nothing unless a
// CA bundle is given (then it checks the chain, as libpq does with a root certificate file),
// verify-ca checks the chain, verify-full the chain and the host name. allow and prefer encrypt
// without checking. The CA bundle, when set, replaces the system's roots.
func UpstreamTLS(repo gatehouse.Repository) (*tls.Config, error) {
	var roots *x509.CertPool // nil: the system's roots
	if repo.CABundle != "" {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(repo.CABundle)) {
			return nil, fmt.Errorf("repository %s: ca_bundle holds no PEM certificate", repo.Name)
		}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if net.ParseIP(repo.Hostname) == nil {
		cfg.ServerName = repo.Hostname
	}
	verifyChain := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
	switch repo.TLSMode {
	case gatehouse.TLSVerifyFull:
		cfg.RootCAs = roots
		cfg.ServerName = repo.Hostname
	case gatehouse.TLSVerifyCA:
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = verifyChain
	case gatehouse.TLSRequire:
		cfg.InsecureSkipVerify = true
		if roots != nil {
			cfg.VerifyConnection = verifyChain
		}
	default:
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}
