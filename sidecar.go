package gatehouse

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Sidecar is a registered data-plane identity. Many sidecar instances (processes) may run as one
// sidecar, for example behind a load balancer whose DNS name is Hostname.
type Sidecar struct {
	ID                      string    `json:"id"`
	DisplayName             string    `json:"display_name"`
	Hostname                string    `json:"hostname"`
	PublicKey               string    `json:"public_key"`
	SecondPublicKey         string    `json:"second_public_key,omitempty"` // for key rotation
	AllowUnsupportedQueries bool      `json:"allow_unsupported_queries"`
	CreatedAt               time.Time `json:"created_at"`
	UpdatedAt               time.Time `json:"updated_at"`
}

// Validate checks the sidecar's fields and public keys.
func (s *Sidecar) Validate() error {
	if strings.TrimSpace(s.DisplayName) == "" {
		return Invalid("display_name", "is required")
	}
	if len(s.DisplayName) > 200 {
		return Invalid("display_name", "must be at most 200 characters")
	}
	if err := ValidateHostname("hostname", s.Hostname); err != nil {
		return err
	}
	if s.PublicKey == "" {
		return Invalid("public_key", "is required: the PEM public key of the sidecar's RSA key pair")
	}
	if _, err := ParseRSAPublicKey(s.PublicKey); err != nil {
		return Invalid("public_key", "%v", err)
	}
	if s.SecondPublicKey != "" {
		if _, err := ParseRSAPublicKey(s.SecondPublicKey); err != nil {
			return Invalid("second_public_key", "%v", err)
		}
	}
	return nil
}

// MinRSABits is the smallest RSA modulus a sidecar key may have.
const MinRSABits = 2048

// ParseRSAPublicKey parses a PEM public key in PKIX ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") form
// and checks that it is RSA with at least MinRSABits bits. The error says what is wrong.
func ParseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, fmt.Errorf("must be a PEM-encoded public key starting with -----BEGIN PUBLIC KEY-----")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("must contain exactly one PEM block")
	}
	var pub *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("does not parse as a PKIX public key: %v", err)
		}
		r, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("must be an RSA key (got %T); generate one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048", k)
		}
		pub = r
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("does not parse as a PKCS#1 RSA public key: %v", err)
		}
		pub = k
	case "PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("is a private key; paste the public key (openssl rsa -in private.pem -pubout)")
	default:
		return nil, fmt.Errorf("has PEM type %q; want PUBLIC KEY or RSA PUBLIC KEY", block.Type)
	}
	if bits := pub.N.BitLen(); bits < MinRSABits {
		return nil, fmt.Errorf("is a %d-bit RSA key; at least %d bits are required", bits, MinRSABits)
	}
	return pub, nil
}

// ListenerPort is a port a sidecar listens on, presenting a database type and version to clients.
type ListenerPort struct {
	SidecarID string       `json:"sidecar_id"`
	Port      int          `json:"port"`
	Type      DatabaseType `json:"type"`
	Version   string       `json:"version"`
	CreatedAt time.Time    `json:"created_at"`
}

// Validate checks the port's fields.
func (p *ListenerPort) Validate() error {
	if err := ValidatePort("port", p.Port); err != nil {
		return err
	}
	if err := p.Type.Validate("type"); err != nil {
		return err
	}
	return ValidateVersion("version", p.Version)
}

// Binding routes a sidecar's listener port to a repository.
type Binding struct {
	SidecarID  string    `json:"sidecar_id"`
	Port       int       `json:"port"`
	Repository string    `json:"repository"`
	CreatedAt  time.Time `json:"created_at"`
}

// CheckBinding reports whether port may be bound to repo, naming the rule that failed.
func CheckBinding(port ListenerPort, repo Repository) error {
	if port.Type != repo.Type {
		return Invalid("repository", "listener port %d presents %s but repository %q is %s; a binding needs the same database type", port.Port, port.Type, repo.Name, repo.Type)
	}
	if ok, rule := CompatibleVersions(port.Type, port.Version, repo.Version); !ok {
		return Invalid("repository", "%s", rule)
	}
	return nil
}

// SidecarInstance is one running sidecar process as it last reported itself.
type SidecarInstance struct {
	SidecarID     string    `json:"sidecar_id"`
	InstanceID    string    `json:"instance_id"`
	Hostname      string    `json:"hostname"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	Ports         []int     `json:"ports"` // listener ports it actually has open
	ConfigVersion int64     `json:"config_version"`
	Errors        []string  `json:"errors"`
	LastSeen      time.Time `json:"last_seen"`
	Status        string    `json:"status"` // healthy, stale or disconnected; derived from LastSeen when served
}
