package scim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/scim"
	"github.com/gatehousedb/gatehouse/internal/store"
	"github.com/gatehousedb/gatehouse/internal/token"
)

const bearer = "ghscim_test-token-0123456789"

// newServer serves SCIM over a real SQLite store with one token, bearer, and a local admin.
func newServer(t *testing.T) (*httptest.Server, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gatehouse.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateSCIMToken(ctx, &gatehouse.SCIMToken{Hash: token.Hash(bearer)}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, &gatehouse.User{Name: "admin", Role: gatehouse.RoleAdmin, Active: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetUserPassword(ctx, "admin", "$2a$10$notarealhashbutnotempty"); err != nil {
		t.Fatal(err)
	}
	s, err := scim.New(scim.Config{Store: st, BaseURL: "https://gatehouse.example.com", AdminGroup: func(g string) bool { return g == "gh-admins" }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, st
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+"/scim/v2"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusNoContent && ct != "application/scim+json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out
}

func mustCall(t *testing.T, srv *httptest.Server, want int, method, path, body string) map[string]any {
	t.Helper()
	code, out := call(t, srv, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

func TestAuthentication(t *testing.T) {
	srv, _ := newServer(t)
	for name, h := range map[string]string{"none": "", "wrong": "Bearer ghscim_nope", "basic": "Basic Zm9vOmJhcg=="} {
		req, _ := http.NewRequest("GET", srv.URL+"/scim/v2/Users", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 401 || body["status"] != "401" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %v", name, resp.StatusCode, body)
		}
	}
}

func TestDiscovery(t *testing.T) {
	srv, _ := newServer(t)
	cfg := mustCall(t, srv, 200, "GET", "/ServiceProviderConfig", "")
	if cfg["patch"].(map[string]any)["supported"] != true || cfg["bulk"].(map[string]any)["supported"] != false {
		t.Errorf("ServiceProviderConfig = %v", cfg)
	}
	rts := mustCall(t, srv, 200, "GET", "/ResourceTypes", "")
	if rts["totalResults"] != 2.0 {
		t.Errorf("ResourceTypes = %v", rts)
	}
	mustCall(t, srv, 200, "GET", "/ResourceTypes/User", "")
	mustCall(t, srv, 404, "GET", "/ResourceTypes/Device", "")
	sch := mustCall(t, srv, 200, "GET", "/Schemas", "")
	if sch["totalResults"] != 2.0 {
		t.Errorf("Schemas = %v", sch)
	}
	mustCall(t, srv, 200, "GET", "/Schemas/"+scim.SchemaGroup, "")
	mustCall(t, srv, 404, "GET", "/Bulk", "")
}

func TestUsers(t *testing.T) {
	srv, st := newServer(t)
	ctx := context.Background()
	// Okta's create.
	u := mustCall(t, srv, 201, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice@example.com",
		"name":{"givenName":"Alice","familyName":"Liddell"},"emails":[{"primary":true,"value":"alice@example.com","type":"work"}],
		"displayName":"Alice Liddell","locale":"en-US","externalId":"00u1","groups":[],"password":"never-stored","active":true}`)
	if u["id"] != "alice@example.com" || u["active"] != true || u["displayName"] != "Alice Liddell" {
		t.Errorf("created %v", u)
	}
	mustCall(t, srv, 409, "POST", "/Users", `{"userName":"alice@example.com"}`)
	mustCall(t, srv, 409, "POST", "/Users", `{"userName":"admin"}`) // exists, though invisible
	mustCall(t, srv, 400, "POST", "/Users", `{"displayName":"no user name"}`)
	for _, n := range []string{"bob@example.com", "carol@example.com", "dave@example.com"} {
		mustCall(t, srv, 201, "POST", "/Users", `{"userName":"`+n+`","active":true}`)
	}

	// Filter and pagination; the local admin never shows.
	l := mustCall(t, srv, 200, "GET", "/Users?filter="+url.QueryEscape(`userName eq "ALICE@example.com"`), "")
	if l["totalResults"] != 1.0 {
		t.Errorf("filter: %v", l)
	}
	l = mustCall(t, srv, 200, "GET", "/Users?filter="+url.QueryEscape(`userName eq "nobody@example.com"`), "")
	if l["totalResults"] != 0.0 || len(l["Resources"].([]any)) != 0 {
		t.Errorf("filter with no match: %v", l)
	}
	mustCall(t, srv, 400, "GET", "/Users?filter="+url.QueryEscape(`emails co "x"`), "")
	var names []string
	for start := 1; ; start += 2 {
		p := mustCall(t, srv, 200, "GET", "/Users?count=2&startIndex="+itoa(start), "")
		if p["totalResults"] != 4.0 || p["startIndex"] != float64(start) {
			t.Fatalf("page %d: %v", start, p)
		}
		rs := p["Resources"].([]any)
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			names = append(names, r.(map[string]any)["userName"].(string))
		}
	}
	if diff := cmp.Diff([]string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"}, names); diff != "" {
		t.Errorf("paged users (-want +got):\n%s", diff)
	}
	mustCall(t, srv, 404, "GET", "/Users/admin", "")
	mustCall(t, srv, 404, "PATCH", "/Users/admin", `{"Operations":[{"op":"replace","path":"active","value":false}]}`)

	// PATCH as Okta (no path) and Entra (string booleans, filtered email path).
	mustCall(t, srv, 200, "PATCH", "/Users/bob@example.com", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","value":{"displayName":"Bob B","active":true}}]}`)
	p := mustCall(t, srv, 200, "PATCH", "/Users/bob@example.com", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"bob@corp.example.com"},
		{"op":"Add","path":"name.familyName","value":"Builder"}]}`)
	if p["displayName"] != "Bob B" || p["emails"].([]any)[0].(map[string]any)["value"] != "bob@corp.example.com" {
		t.Errorf("patched %v", p)
	}
	mustCall(t, srv, 400, "PATCH", "/Users/bob@example.com", `{"Operations":[{"op":"replace","path":"userName","value":"robert@example.com"}]}`)
	mustCall(t, srv, 400, "PATCH", "/Users/bob@example.com", `{"Operations":[{"op":"replace","path":"active","value":"maybe"}]}`)
	mustCall(t, srv, 400, "PATCH", "/Users/bob@example.com", `{"Operations":[{"op":"move","path":"active","value":true}]}`)

	// Deactivation revokes what the user holds.
	if err := st.CreateToken(ctx, &gatehouse.AccessToken{ID: "t1", Owner: "carol@example.com", Hash: token.Hash("gh1_x"), ExpiresAt: farFuture}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, &gatehouse.LoginSession{Hash: "s1", User: "carol@example.com", ExpiresAt: farFuture}); err != nil {
		t.Fatal(err)
	}
	d := mustCall(t, srv, 200, "PATCH", "/Users/carol@example.com", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"replace","value":{"active":"False"}}]}`)
	if d["active"] != false {
		t.Errorf("deactivated: %v", d)
	}
	if tok, _ := st.GetToken(ctx, "t1"); tok == nil || tok.RevokedAt == nil {
		t.Errorf("carol's token was not revoked: %+v", tok)
	}
	if _, err := st.SessionByHash(ctx, "s1"); gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
		t.Errorf("carol's session survived: %v", err)
	}

	// PUT replaces; renaming is refused.
	r := mustCall(t, srv, 200, "PUT", "/Users/dave@example.com", `{"userName":"dave@example.com","displayName":"Dave","active":true}`)
	if r["displayName"] != "Dave" || r["emails"] != nil {
		t.Errorf("replaced: %v", r)
	}
	mustCall(t, srv, 400, "PUT", "/Users/dave@example.com", `{"userName":"david@example.com"}`)

	mustCall(t, srv, 204, "DELETE", "/Users/dave@example.com", "")
	mustCall(t, srv, 404, "GET", "/Users/dave@example.com", "")
	mustCall(t, srv, 404, "DELETE", "/Users/admin", "")
}

func TestGroups(t *testing.T) {
	srv, st := newServer(t)
	ctx := context.Background()
	for _, n := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		mustCall(t, srv, 201, "POST", "/Users", `{"userName":"`+n+`"}`)
	}
	g := mustCall(t, srv, 201, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Data Analysts","members":[{"value":"alice@example.com"}]}`)
	if g["id"] != "Data Analysts" {
		t.Errorf("created %v", g)
	}
	mustCall(t, srv, 201, "POST", "/Groups", `{"displayName":"gh-admins"}`)
	if a, _ := st.GetGroup(ctx, "gh-admins"); a == nil || a.Role != gatehouse.RoleAdmin {
		t.Errorf("an admin group should get role ADMIN: %+v", a)
	}
	mustCall(t, srv, 400, "POST", "/Groups", `{"displayName":"x","members":[{"value":"admin"}]}`) // local users cannot be granted
	mustCall(t, srv, 400, "POST", "/Groups", `{"displayName":"y","members":[{"value":"nobody@example.com"}]}`)

	members := func() []string {
		got, err := st.GetGroup(ctx, "Data Analysts")
		if err != nil {
			t.Fatal(err)
		}
		return got.Members
	}
	id := url.PathEscape("Data Analysts")
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"okta add", `{"Operations":[{"op":"add","path":"members","value":[{"value":"bob@example.com","display":"bob"}]}]}`, []string{"alice@example.com", "bob@example.com"}},
		{"okta remove by filter", `{"Operations":[{"op":"remove","path":"members[value eq \"alice@example.com\"]"}]}`, []string{"bob@example.com"}},
		{"entra add", `{"Operations":[{"op":"Add","path":"members","value":[{"value":"carol@example.com"},{"value":"alice@example.com"}]}]}`, []string{"alice@example.com", "bob@example.com", "carol@example.com"}},
		{"entra remove with value", `{"Operations":[{"op":"Remove","path":"members","value":[{"value":"bob@example.com"}]}]}`, []string{"alice@example.com", "carol@example.com"}},
		{"replace", `{"Operations":[{"op":"replace","path":"members","value":[{"value":"bob@example.com"}]}]}`, []string{"bob@example.com"}},
		{"replace without path", `{"Operations":[{"op":"replace","value":{"id":"Data Analysts","displayName":"Data Analysts","members":[{"value":"carol@example.com"}]}}]}`, []string{"carol@example.com"}},
		{"remove all", `{"Operations":[{"op":"remove","path":"members"}]}`, []string{}},
	} {
		mustCall(t, srv, 200, "PATCH", "/Groups/"+id, tc.body)
		if diff := cmp.Diff(tc.want, members()); diff != "" {
			t.Errorf("%s: members (-want +got):\n%s", tc.name, diff)
		}
	}
	mustCall(t, srv, 400, "PATCH", "/Groups/"+id, `{"Operations":[{"op":"replace","path":"displayName","value":"Analysts"}]}`)
	mustCall(t, srv, 400, "PATCH", "/Groups/"+id, `{"Operations":[{"op":"add","path":"members","value":[{"value":"admin"}]}]}`)

	l := mustCall(t, srv, 200, "GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "gh-admins"`), "")
	if l["totalResults"] != 1.0 {
		t.Errorf("group filter: %v", l)
	}
	mustCall(t, srv, 200, "PUT", "/Groups/"+id, `{"displayName":"Data Analysts","members":[{"value":"alice@example.com"}]}`)
	if diff := cmp.Diff([]string{"alice@example.com"}, members()); diff != "" {
		t.Errorf("PUT members (-want +got):\n%s", diff)
	}
	mustCall(t, srv, 204, "DELETE", "/Groups/"+id, "")
	mustCall(t, srv, 404, "GET", "/Groups/"+id, "")
}
