package gatehouse

import (
	"crypto/x509"
	"encoding/pem"
	"time"
)

// TLSMode is how a sidecar secures its connection to a repository, with libpq's meanings.
type TLSMode string

// TLS modes.
const (
	TLSDisable    TLSMode = "disable"     // never TLS
	TLSAllow      TLSMode = "allow"       // plain first, TLS if the server insists
	TLSPrefer     TLSMode = "prefer"      // TLS if the server offers it, else plain
	TLSRequire    TLSMode = "require"     // TLS, certificate not checked
	TLSVerifyCA   TLSMode = "verify-ca"   // TLS, certificate chains to the CA bundle
	TLSVerifyFull TLSMode = "verify-full" // TLS, chain and host name checked
)

// TLSModes lists every mode.
var TLSModes = []TLSMode{TLSDisable, TLSAllow, TLSPrefer, TLSRequire, TLSVerifyCA, TLSVerifyFull}

// Validate reports whether m is a known mode.
func (m TLSMode) Validate(field string) error {
	for _, k := range TLSModes {
		if m == k {
			return nil
		}
	}
	return Invalid(field, "must be one of disable, allow, prefer, require, verify-ca, verify-full")
}

// Repository is a registered database.
type Repository struct {
	Name     string       `json:"name"`
	Type     DatabaseType `json:"type"`
	Version  string       `json:"version"`
	Hostname string       `json:"hostname"`
	Port     int          `json:"port"`
	Database string       `json:"database"`
	TLSMode  TLSMode      `json:"tls_mode"`
	CABundle string       `json:"ca_bundle,omitempty"` // PEM; used by verify-ca and verify-full
	// RecordParameters opts the repository in to recording bind parameter values in activity.
	// Off by default: parameter values are data (often personal or secret), statement text is not.
	RecordParameters bool      `json:"record_parameters"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Normalize fills defaults: the type's usual port, TLS mode "prefer".
func (r *Repository) Normalize() {
	if r.Port == 0 {
		r.Port = r.Type.DefaultPort()
	}
	if r.TLSMode == "" {
		r.TLSMode = TLSPrefer
	}
}

// Validate checks every field of r.
func (r *Repository) Validate() error {
	if err := ValidateName("name", r.Name); err != nil {
		return err
	}
	if err := r.Type.Validate("type"); err != nil {
		return err
	}
	if err := ValidateVersion("version", r.Version); err != nil {
		return err
	}
	if err := ValidateHostname("hostname", r.Hostname); err != nil {
		return err
	}
	if err := ValidatePort("port", r.Port); err != nil {
		return err
	}
	if len(r.Database) > 128 {
		return Invalid("database", "must be at most 128 characters")
	}
	if err := r.TLSMode.Validate("tls_mode"); err != nil {
		return err
	}
	if r.CABundle != "" {
		if err := validateCABundle(r.CABundle); err != nil {
			return err
		}
	}
	return nil
}

func validateCABundle(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return Invalid("ca_bundle", "must contain only PEM CERTIFICATE blocks (found %q)", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return Invalid("ca_bundle", "certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return Invalid("ca_bundle", "must be one or more PEM-encoded certificates")
	}
	return nil
}
