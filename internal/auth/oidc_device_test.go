package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

// fakeIdP serves a discovery document and answers the token endpoint with the OAuth error code
// in tokenErr; the e2e tests run the whole grant against a real OP.
type fakeIdP struct {
	*httptest.Server
	device   bool   // advertise device_authorization_endpoint
	methods  string // token_endpoint_auth_methods_supported, JSON
	tokenErr string
	mu       sync.Mutex
	gotAuth  []string // how the client authenticated each request: "basic" or "form"
}

func (f *fakeIdP) auths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.gotAuth)
}

func newFakeIdP(t *testing.T, device bool, methods string) *fakeIdP {
	f := &fakeIdP{device: device, methods: methods}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		doc := map[string]any{"issuer": f.URL, "authorization_endpoint": f.URL + "/auth", "token_endpoint": f.URL + "/token", "jwks_uri": f.URL + "/keys"}
		if f.device {
			doc["device_authorization_endpoint"] = f.URL + "/device"
		}
		if f.methods != "" {
			var m []string
			json.Unmarshal([]byte(f.methods), &m)
			doc["token_endpoint_auth_methods_supported"] = m
		}
		json.NewEncoder(w).Encode(doc)
	})
	auth := func(r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		if id, secret, ok := r.BasicAuth(); ok && id == "gatehouse" && secret == "s3cr%2Ft" {
			f.gotAuth = append(f.gotAuth, "basic")
		} else if r.PostForm.Get("client_id") == "gatehouse" && r.PostForm.Get("client_secret") == "s3cr/t" {
			f.gotAuth = append(f.gotAuth, "form")
		}
	}
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		auth(r)
		if f.tokenErr == "unauthorized_client" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"unauthorized_client","error_description":"client missing grant type"}`)
			return
		}
		fmt.Fprintf(w, `{"device_code":"dc-secret","user_code":"BCDF-GHJK","verification_uri":"%s/activate","expires_in":600}`, f.URL)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		auth(r)
		if r.PostForm.Get("grant_type") != GrantTypeDeviceCode || r.PostForm.Get("device_code") != "dc-secret" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":%q}`, f.tokenErr)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func newDeviceOIDC(t *testing.T, f *fakeIdP) *OIDC {
	o, err := NewOIDC(OIDCConfig{Issuer: f.URL, ClientID: "gatehouse", ClientSecret: "s3cr/t", RedirectURL: "https://gh.example.com/cb", ConsumerGroups: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestStartDevice(t *testing.T) {
	ctx := context.Background()
	f := newFakeIdP(t, true, "")
	d, err := newDeviceOIDC(t, f).StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.UserCode != "BCDF-GHJK" || d.VerificationURI != f.URL+"/activate" || d.Interval.Seconds() != 5 || d.ExpiresIn.Seconds() != 600 {
		t.Errorf("device authorization: %+v", d)
	}
	if strings.Contains(fmt.Sprint(d), "dc-secret") || strings.Contains(d.LogValue().String(), "dc-secret") {
		t.Errorf("the device code shows in %v", d)
	}

	f.tokenErr = "unauthorized_client"
	if _, err := newDeviceOIDC(t, f).StartDevice(ctx); gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound || !strings.Contains(err.Error(), "--no-browser") {
		t.Errorf("a client without the grant: %v", err)
	}
	if _, err := newDeviceOIDC(t, newFakeIdP(t, false, "")).StartDevice(ctx); gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound ||
		!strings.Contains(err.Error(), "no device_authorization_endpoint") {
		t.Errorf("an IdP without a device endpoint: %v", err)
	}
}

func TestPollDeviceErrors(t *testing.T) {
	for _, tc := range []struct {
		tokenErr string
		wantIs   error
		wantCode string
		wantMsg  string
	}{
		{tokenErr: "authorization_pending", wantIs: ErrAuthorizationPending},
		{tokenErr: "slow_down", wantIs: ErrSlowDown},
		{tokenErr: "access_denied", wantCode: gatehouse.ECodeForbidden, wantMsg: "denied"},
		{tokenErr: "expired_token", wantCode: gatehouse.ECodeUnauthenticated, wantMsg: "expired"},
		{tokenErr: "invalid_grant", wantCode: gatehouse.ECodeUnauthenticated, wantMsg: "refused the device code (invalid_grant)"},
	} {
		t.Run(tc.tokenErr, func(t *testing.T) {
			f := newFakeIdP(t, true, "")
			f.tokenErr = tc.tokenErr
			_, err := newDeviceOIDC(t, f).PollDevice(context.Background(), "dc-secret")
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
			if tc.wantCode != "" && (gatehouse.ErrorCode(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Errorf("err = %v, want %s %q", err, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

// TestDeviceClientAuth: client_secret_basic (form-encoded, RFC 6749 section 2.3.1) unless the IdP
// takes only client_secret_post.
func TestDeviceClientAuth(t *testing.T) {
	for _, tc := range []struct{ methods, want string }{
		{"", "basic"},
		{`["client_secret_basic","client_secret_post"]`, "basic"},
		{`["client_secret_post"]`, "form"},
	} {
		f := newFakeIdP(t, true, tc.methods)
		f.tokenErr = "authorization_pending"
		o := newDeviceOIDC(t, f)
		if _, err := o.StartDevice(context.Background()); err != nil {
			t.Fatal(err)
		}
		o.PollDevice(context.Background(), "dc-secret")
		if got := f.auths(); len(got) != 2 || got[0] != tc.want || got[1] != tc.want {
			t.Errorf("methods %s: the client authenticated %v, want %s twice", tc.methods, got, tc.want)
		}
	}
}
