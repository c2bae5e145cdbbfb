package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 client (RFC 5802, RFC 7677) as PostgreSQL uses it: the user name in the messages
// is empty (the server takes it from the startup packet) and channel binding is not used.

const (
	scramMechanism = "SCRAM-SHA-256"
	// maxSCRAMIterations bounds the work a hostile upstream can make us do.
	maxSCRAMIterations = 1 << 20
)

type scramClient struct {
	password        string
	clientNonce     string
	clientFirstBare string
	authMessage     string
	saltedPassword  []byte
}

func newSCRAMClient(password string) (*scramClient, error) {
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	c := &scramClient{password: password, clientNonce: base64.RawStdEncoding.EncodeToString(nonce)}
	c.clientFirstBare = "n=,r=" + c.clientNonce
	return c, nil
}

// clientFirst is the SASLInitialResponse data.
func (c *scramClient) clientFirst() []byte { return []byte("n,," + c.clientFirstBare) }

type scramServerFirst struct {
	nonce      string
	salt       []byte
	iterations int
}

// parseSCRAMServerFirst decodes "r=...,s=...,i=...".
func parseSCRAMServerFirst(msg string) (scramServerFirst, error) {
	var sf scramServerFirst
	parts := strings.Split(msg, ",")
	if len(parts) < 3 || !strings.HasPrefix(parts[0], "r=") || !strings.HasPrefix(parts[1], "s=") || !strings.HasPrefix(parts[2], "i=") {
		return sf, errors.New("malformed SCRAM server-first-message")
	}
	sf.nonce = parts[0][2:]
	salt, err := base64.StdEncoding.DecodeString(parts[1][2:])
	if err != nil || len(salt) == 0 {
		return sf, errors.New("malformed SCRAM salt")
	}
	sf.salt = salt
	it, err := strconv.Atoi(parts[2][2:])
	if err != nil || it < 1 || it > maxSCRAMIterations {
		return sf, fmt.Errorf("SCRAM iteration count %q out of range", parts[2][2:])
	}
	sf.iterations = it
	return sf, nil
}

// clientFinal answers the server-first-message.
func (c *scramClient) clientFinal(serverFirst []byte) ([]byte, error) {
	sf, err := parseSCRAMServerFirst(string(serverFirst))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(sf.nonce, c.clientNonce) || len(sf.nonce) == len(c.clientNonce) {
		return nil, errors.New("SCRAM server nonce does not extend the client nonce")
	}
	c.saltedPassword, err = pbkdf2.Key(sha256.New, c.password, sf.salt, sf.iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive SCRAM key: %w", err)
	}
	withoutProof := "c=biws,r=" + sf.nonce
	c.authMessage = c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	clientKey := hmacSHA256(c.saltedPassword, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	sig := hmacSHA256(storedKey[:], c.authMessage)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verifyServerFinal checks the server's signature, proving it knows the password too.
func (c *scramClient) verifyServerFinal(serverFinal []byte) error {
	s := string(serverFinal)
	if strings.HasPrefix(s, "e=") {
		return fmt.Errorf("SCRAM server error: %s", s[2:])
	}
	v, ok := strings.CutPrefix(s, "v=")
	if !ok {
		return errors.New("malformed SCRAM server-final-message")
	}
	v, _, _ = strings.Cut(v, ",")
	got, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return errors.New("malformed SCRAM server signature")
	}
	want := hmacSHA256(hmacSHA256(c.saltedPassword, "Server Key"), c.authMessage)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return errors.New("SCRAM server signature does not match: the repository did not prove it knows the password")
	}
	return nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
