package token

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

func TestMint(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		secret, hash, err := Mint()
		if err != nil {
			t.Fatal(err)
		}
		if !gatehouse.LooksLikeToken(secret) {
			t.Fatalf("Mint() = %q, which does not look like a token", secret)
		}
		if got, want := len(secret), len(gatehouse.TokenPrefix)+SecretChars; got != want || got > 64 {
			t.Fatalf("len(secret) = %d, want %d (at most 64)", got, want)
		}
		if hash != Hash(secret) || len(hash) != 64 {
			t.Fatalf("hash %q is not the hex SHA-256 of the secret", hash)
		}
		if !Verify(secret, hash) || Verify(secret+"x", hash) || Verify(secret, strings.ToUpper(hash)) {
			t.Fatal("Verify disagrees with Hash")
		}
		if seen[secret] {
			t.Fatalf("Mint returned %q twice", secret)
		}
		seen[secret] = true
	}
}

func TestHashKnownValue(t *testing.T) {
	// sha256("abc")
	if got, want := Hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Hash(abc) = %s, want %s", got, want)
	}
}

func TestRandomIsUniformEnough(t *testing.T) {
	s, err := Random(62 * 200)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[rune]int{}
	for _, c := range s {
		if !strings.ContainsRune(base62, c) {
			t.Fatalf("Random returned %q, not base62", c)
		}
		counts[c]++
	}
	if len(counts) != 62 {
		t.Errorf("saw %d distinct characters in 12400, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 100 || n > 320 { // expected 200; these bounds are > 7 standard deviations away
			t.Errorf("character %q appeared %d times, want about 200", c, n)
		}
	}
}

func TestSecretRedacts(t *testing.T) {
	const v = "gh1_supersecretvalue0123456789abcdef"
	s := NewSecret(v)
	if s.Reveal() != v {
		t.Fatal("Reveal lost the value")
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", s)
	j, err := json.Marshal(struct{ T Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%+v": fmt.Sprintf("%+v", s),
		"%#v": fmt.Sprintf("%#v", s), "%q": fmt.Sprintf("%q", s), "%x": fmt.Sprintf("%x", s),
		"struct %+v": fmt.Sprintf("%+v", struct{ T Secret }{s}), "slog": logs.String(), "json": string(j),
	}
	for name, out := range outs {
		if strings.Contains(out, "supersecret") || !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s printed %q", name, out)
		}
	}
}
