package syncapi

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

func TestClient(t *testing.T) {
	key, err := LoadPrivateKey("testdata/openssl_pkcs8.pem")
	if err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{
		Version: 7,
		Sidecar: Settings{ID: "sc1"},
		Ports:   []gatehouse.ListenerPort{{SidecarID: "sc1", Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"}},
		Tokens:  []TokenVerifier{{ID: "t1", Hash: HashToken("gh1_x"), Owner: "alice", ExpiresAt: time.Unix(2e9, 0).UTC()}},
		Users:   []User{{Name: "alice", Active: true, Groups: []string{"eng"}}},
	}
	var gotReport Report
	jtis := map[string]bool{}
	mux := http.NewServeMux()
	check := func(w http.ResponseWriter, r *http.Request, aud string) bool {
		raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		var c jwt.RegisteredClaims
		_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(aud), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
		if err != nil || c.Issuer != "sc1" || c.Subject != "inst" || jtis[c.ID] {
			t.Logf("refused JWT (%v): %+v", err, c)
			w.WriteHeader(http.StatusUnauthorized)
			return false
		}
		jtis[c.ID] = true
		return true
	}
	var srv *httptest.Server
	mux.HandleFunc("GET "+ConfigPath, func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r, srv.URL) {
			return
		}
		if r.URL.Query().Get("since") == "7" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		json.NewEncoder(w).Encode(snap)
	})
	mux.HandleFunc("POST "+ReportPath, func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r, srv.URL) {
			return
		}
		json.NewDecoder(r.Body).Decode(&gotReport)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+TokenLookupPath+"{hash}", func(w http.ResponseWriter, r *http.Request) {
		if !check(w, r, srv.URL) {
			return
		}
		if r.PathValue("hash") != HashToken("gh1_x") {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(TokenLookup{Token: snap.Tokens[0], User: snap.Users[0], ConfigVersion: 8})
	})
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {})
	srv = httptest.NewServer(mux)
	defer srv.Close()

	c, err := NewClient(srv.URL+"/", &Signer{Key: key, SidecarID: "sc1", InstanceID: "inst", Audience: srv.URL + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := c.Config(ctx, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if got, err := c.Config(ctx, 7, time.Second); got != nil || err != nil {
		t.Errorf("Config(since=7) = %v, %v; want nil, nil (304)", got, err)
	}
	rep := Report{InstanceID: "inst", Hostname: "h", Version: "dev", Ports: []int{15432}, ConfigVersion: 7, Errors: []string{}}
	if err := c.Report(ctx, &rep); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, gotReport); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	l, err := c.LookupToken(ctx, HashToken("gh1_x"))
	if err != nil || l.Token.ID != "t1" || l.ConfigVersion != 8 {
		t.Errorf("LookupToken = %+v, %v", l, err)
	}
	if _, err := c.LookupToken(ctx, HashToken("gh1_y")); !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("LookupToken(unknown) = %v; want ErrTokenNotFound", err)
	}

	bad, _ := NewClient(srv.URL, &Signer{Key: mustKey(t), SidecarID: "sc1", InstanceID: "inst", Audience: srv.URL}, nil)
	var se *StatusError
	if _, err := bad.Config(ctx, 0, time.Second); !errors.As(err, &se) || se.StatusCode != 401 {
		t.Errorf("Config with the wrong key = %v; want a 401 StatusError", err)
	}
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
