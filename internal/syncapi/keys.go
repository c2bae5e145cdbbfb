package syncapi

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatehousedb/gatehouse"
)

// Key pair file names written by WriteKeyPair.
const (
	PrivateKeyFile = "private.pem"
	PublicKeyFile  = "public.pem"
)

// ParsePrivateKey parses a PEM RSA private key in PKCS#8 ("PRIVATE KEY", what both
// `gatehouse sidecar keygen` and `openssl genpkey` write) or PKCS#1 ("RSA PRIVATE KEY") form, with at
// least gatehouse.MinRSABits bits.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found; expected -----BEGIN PRIVATE KEY-----")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
		}
		r, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, not RSA; generate one with: gatehouse sidecar keygen --out DIR", k)
		}
		key = r
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#1 private key: %w", err)
		}
		key = k
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("key is encrypted; the sidecar needs an unencrypted key (protect it with file permissions)")
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, errors.New("this is the public key; pass the private key (private.pem)")
	default:
		return nil, fmt.Errorf("PEM block is %q; want PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if bits := key.N.BitLen(); bits < gatehouse.MinRSABits {
		return nil, fmt.Errorf("key has %d bits; at least %d are required", bits, gatehouse.MinRSABits)
	}
	return key, nil
}

// LoadPrivateKey reads and parses a private key file (see ParsePrivateKey).
func LoadPrivateKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return key, nil
}

// EncodePublicKey returns the PEM PKIX ("PUBLIC KEY") form of key, the form the control plane
// registers.
func EncodePublicKey(key *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WriteKeyPair generates a 2048-bit RSA key pair and writes dir/private.pem (PKCS#8, mode 0600) and
// dir/public.pem (PKIX). It creates dir if needed and refuses to overwrite either file. It returns
// the paths written.
func WriteKeyPair(dir string) (privPath, pubPath string, err error) {
	privPath, pubPath = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists; refusing to overwrite a key (move it away or choose another --out)", p)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create key directory: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, gatehouse.MinRSABits)
	if err != nil {
		return "", "", fmt.Errorf("generate RSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("encode private key: %w", err)
	}
	pub, err := EncodePublicKey(&key.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("encode public key: %w", err)
	}
	if err := writeExclusive(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeExclusive(pubPath, pub, 0o644); err != nil {
		os.Remove(privPath)
		return "", "", err
	}
	return privPath, pubPath, nil
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite a key", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
