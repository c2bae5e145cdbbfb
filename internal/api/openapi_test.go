package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// nilStore satisfies Store for tests that never reach persistence; any call panics.
type nilStore struct{ Store }

func newBare(t *testing.T) (*API, *httptest.Server) {
	t.Helper()
	a, err := New(Config{Store: nilStore{}, PublicURL: "https://gatehouse.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, srv
}

// TestOpenAPIMatchesRoutes checks that the document lists exactly the route table, and that the mux
// serves every route of the table (an unauthenticated call reaches our guard, not the mux's 404/405).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	a, srv := newBare(t)
	resp, err := http.Get(srv.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET openapi.json: %s", resp.Status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	var documented, registered []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, rt := range a.documented {
		registered = append(registered, rt.Method+" "+rt.Path)
	}
	if len(a.documented) < len(a.routes()) {
		t.Errorf("only %d of the %d table routes were registered", len(a.documented), len(a.routes()))
	}
	sort.Strings(documented)
	sort.Strings(registered)
	if diff := cmp.Diff(registered, documented); diff != "" {
		t.Errorf("OpenAPI paths differ from the route table (-routes +openapi):\n%s", diff)
	}

	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, rt := range a.documented {
		path := param.ReplaceAllStringFunc(rt.Path, func(p string) string {
			if p == "{port}" {
				return "15432"
			}
			return "x"
		})
		req, _ := http.NewRequest(rt.Method, srv.URL+path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusUnauthorized
		switch {
		case rt.Path == "/api/v1/openapi.json":
			want = http.StatusOK
		case rt.Path == "/api/v1/login":
			want = http.StatusBadRequest // {} has no username
		case rt.Path == "/api/v1/sso":
			want = http.StatusOK
		case rt.Path == "/api/v1/sso/login", rt.Path == "/api/v1/sso/callback", rt.Path == "/api/v1/sso/device", rt.Path == "/api/v1/sso/device/poll":
			want = http.StatusNotFound // single sign-on is off here
		case rt.Path == "/api/v1/sso/token":
			want = http.StatusBadRequest // {} has no grant_type
		}
		if resp.StatusCode != want || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s, want %d from our handler", rt.Method, path, resp.StatusCode, body, want)
		}
	}
}

func TestRouteTableIsWellFormed(t *testing.T) {
	a, _ := newBare(t)
	seen := map[string]bool{}
	for _, rt := range a.documented {
		key := rt.Method + " " + rt.Path
		if seen[key] {
			t.Errorf("%s appears twice", key)
		}
		seen[key] = true
		if rt.Summary == "" || rt.Status == 0 || rt.handle == nil {
			t.Errorf("%s: summary, status and handler are required", key)
		}
		if (rt.Status == http.StatusNoContent) != (rt.Response == nil) {
			t.Errorf("%s: a 204 has no body and only a 204", key)
		}
		if rt.Method == "DELETE" && rt.Query["cascade"] == "" && strings.Count(rt.Path, "/") < 5 && !strings.Contains(rt.Path, "tokens") &&
			!strings.Contains(rt.Path, "policies") && !strings.Contains(rt.Path, "users/{name}") && !strings.Contains(rt.Path, "groups") {
			t.Errorf("%s: deletes of objects with dependents take ?cascade", key)
		}
	}
}

func TestUnknownEndpointIsJSON404(t *testing.T) {
	_, srv := newBare(t)
	resp, err := http.Get(srv.URL + "/api/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 404 || body.Error == nil || body.Error.Code != "not_found" {
		t.Errorf("GET /api/v1/nope = %d %+v, want 404 not_found", resp.StatusCode, body.Error)
	}
}
