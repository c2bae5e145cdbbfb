package controlplane

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehousedb/gatehouse"
)

var ignoreTimes = cmpopts.IgnoreTypes(time.Time{}, &time.Time{})

// TestWorkflow walks the reference guide's registration workflow through the API: repository,
// repository users with every secret source, sidecar, listener port, binding, impersonation policy
// for a user and for a group, data consumers creating tokens and listing connections.
func TestWorkflow(t *testing.T) {
	backends(t, func(t *testing.T, storeURL string) {
		e := startBackend(t, storeURL)
		admin := e.login("admin", adminPassword)

		var me gatehouse.User
		e.must(admin, "GET", "/api/v1/me", nil, 200, &me)
		if me.Name != "admin" || me.Role != gatehouse.RoleAdmin {
			t.Fatalf("me = %+v", me)
		}

		var repo gatehouse.Repository
		e.must(admin, "POST", "/api/v1/repositories", `{"name":"sales","type":"postgresql","version":"15","hostname":"db1.example.com","port":5432,"database":"postgres","tls_mode":"require"}`, 201, &repo)
		wantRepo := gatehouse.Repository{Name: "sales", Type: "postgresql", Version: "15", Hostname: "db1.example.com", Port: 5432, Database: "postgres", TLSMode: "require"}
		if diff := cmp.Diff(wantRepo, repo, ignoreTimes); diff != "" || repo.CreatedAt.IsZero() {
			t.Errorf("created repository (-want +got):\n%s", diff)
		}
		// Defaults: the type's port, TLS mode prefer.
		var hr gatehouse.Repository
		e.must(admin, "POST", "/api/v1/repositories", `{"name":"hr","type":"mysql","version":"8.0","hostname":"10.0.0.7","database":"hr"}`, 201, &hr)
		if hr.Port != 3306 || hr.TLSMode != "prefer" {
			t.Errorf("defaults: port %d tls_mode %s, want 3306 prefer", hr.Port, hr.TLSMode)
		}

		users := []string{
			`{"username":"admin_user","secret":{"source":"aws-secrets-manager","arn":"arn:aws:secretsmanager:us-east-2:111111111111:secret:username-KkAAcC","json_path":"password"}}`,
			`{"username":"kv_user","secret":{"source":"azure-key-vault","vault_uri":"https://myvault.vault.azure.net/","secret_name":"db-password","version":"0123456789abcdef0123456789abcdef"}}`,
			`{"username":"env_user","secret":{"source":"env","name":"SALES_PASSWORD"}}`,
			`{"username":"file_user","secret":{"source":"file","path":"/run/secrets/sales"}}`,
			`{"username":"iam_user","secret":{"source":"aws-rds-iam","region":"eu-west-1"}}`,
			`{"username":"entra_user","secret":{"source":"azure-entra"}}`,
		}
		for _, u := range users {
			var got gatehouse.RepositoryUser
			e.must(admin, "POST", "/api/v1/repositories/sales/users", u, 201, &got)
			if got.Repository != "sales" || got.Secret.Source == "" {
				t.Errorf("created repository user %+v", got)
			}
		}
		var ru []gatehouse.RepositoryUser
		e.must(admin, "GET", "/api/v1/repositories/sales/users", nil, 200, &ru)
		if len(ru) != len(users) {
			t.Errorf("listed %d repository users, want %d", len(ru), len(users))
		}
		var aws gatehouse.RepositoryUser
		e.must(admin, "GET", "/api/v1/repositories/sales/users/admin_user", nil, 200, &aws)
		wantRef := gatehouse.SecretRef{Source: "aws-secrets-manager", ARN: "arn:aws:secretsmanager:us-east-2:111111111111:secret:username-KkAAcC", JSONPath: "password"}
		if diff := cmp.Diff(wantRef, aws.Secret); diff != "" {
			t.Errorf("stored secret reference (-want +got):\n%s", diff)
		}

		var sc struct {
			gatehouse.Sidecar
			ControlPlaneURL string `json:"control_plane_url"`
		}
		key := publicKeyPEM(t, 2048)
		e.must(admin, "POST", "/api/v1/sidecars", map[string]any{"display_name": "east", "hostname": "sidecar.example.com", "public_key": key}, 201, &sc)
		if sc.ID == "" || sc.ControlPlaneURL != e.srv.URL() || sc.PublicKey == "" || sc.AllowUnsupportedQueries {
			t.Fatalf("registered sidecar %+v", sc)
		}
		sp := "/api/v1/sidecars/" + sc.ID

		var port gatehouse.ListenerPort
		e.must(admin, "POST", sp+"/ports", `{"port":15432,"type":"postgresql","version":"15"}`, 201, &port)
		if port.SidecarID != sc.ID || port.Port != 15432 {
			t.Errorf("port %+v", port)
		}
		var b gatehouse.Binding
		e.must(admin, "POST", sp+"/bindings", `{"port":15432,"repository":"sales"}`, 201, &b)
		if diff := cmp.Diff(gatehouse.Binding{SidecarID: sc.ID, Port: 15432, Repository: "sales"}, b, ignoreTimes); diff != "" {
			t.Errorf("binding (-want +got):\n%s", diff)
		}
		e.must(admin, "GET", sp+"/bindings/15432/sales", nil, 200, nil)

		e.must(admin, "POST", "/api/v1/users", `{"name":"alice@example.com","email":"alice@example.com","password":"alice-password"}`, 201, nil)
		e.must(admin, "POST", "/api/v1/users", `{"name":"bob@example.com","password":"bob-password"}`, 201, nil)
		e.must(admin, "POST", "/api/v1/users", `{"name":"carol@example.com","password":"carol-password"}`, 201, nil)
		var g gatehouse.Group
		e.must(admin, "POST", "/api/v1/groups", `{"name":"analysts","members":["bob@example.com"]}`, 201, &g)
		if diff := cmp.Diff([]string{"bob@example.com"}, g.Members); diff != "" {
			t.Errorf("group members (-want +got):\n%s", diff)
		}
		var alice gatehouse.User
		e.must(admin, "GET", "/api/v1/users/alice@example.com", nil, 200, &alice)
		if alice.Role != gatehouse.RoleDataConsumer || !alice.Active {
			t.Errorf("new user defaults: %+v, want DATA_CONSUMER and active", alice)
		}

		e.must(admin, "POST", "/api/v1/impersonation-policies",
			`{"name":"analysts","repository":"sales","rules":[{"users":["alice@example.com"],"repository_users":["admin_user"]},{"groups":["analysts"],"repository_users":["env_user","file_user"]}]}`, 201, nil)

		aliceTok := e.login("alice@example.com", "alice-password")
		bobTok := e.login("bob@example.com", "bob-password")
		carolTok := e.login("carol@example.com", "carol-password")

		var tok struct {
			ID        string    `json:"id"`
			Token     string    `json:"token"`
			Owner     string    `json:"owner"`
			Name      string    `json:"name"`
			ExpiresAt time.Time `json:"expires_at"`
			CreatedAt time.Time `json:"created_at"`
		}
		e.must(aliceTok, "POST", "/api/v1/tokens", `{"ttl":"1h","name":"laptop"}`, 201, &tok)
		if !gatehouse.LooksLikeToken(tok.Token) || tok.ID == "" || tok.Owner != "alice@example.com" || tok.Name != "laptop" {
			t.Errorf("token %+v", tok)
		}
		if d := tok.ExpiresAt.Sub(tok.CreatedAt); d < time.Hour-5*time.Second || d > time.Hour+5*time.Second {
			t.Errorf("token lifetime %v, want 1h", d)
		}
		// The secret is shown once: never in a list or a get.
		_, list := e.call(aliceTok, "GET", "/api/v1/tokens", nil)
		_, one := e.call(aliceTok, "GET", "/api/v1/tokens/"+tok.ID, nil)
		if strings.Contains(string(list)+string(one), tok.Token) || strings.Contains(string(list), "hash") {
			t.Errorf("a token listing shows the secret or its hash: %s %s", list, one)
		}

		conn := func(ru, username string) gatehouse.Connection {
			return gatehouse.Connection{Repository: "sales", Type: "postgresql", Database: "postgres", RepositoryUser: ru,
				SidecarID: sc.ID, SidecarHost: "sidecar.example.com", Port: 15432, Username: username}
		}
		var got []gatehouse.Connection
		e.must(aliceTok, "GET", "/api/v1/connections", nil, 200, &got)
		if diff := cmp.Diff([]gatehouse.Connection{conn("admin_user", "admin_user")}, got); diff != "" {
			t.Errorf("alice's connections (user rule) (-want +got):\n%s", diff)
		}
		e.must(bobTok, "GET", "/api/v1/connections", nil, 200, &got)
		if diff := cmp.Diff([]gatehouse.Connection{conn("env_user", "env_user"), conn("file_user", "file_user")}, got); diff != "" {
			t.Errorf("bob's connections (group rule) (-want +got):\n%s", diff)
		}
		e.must(carolTok, "GET", "/api/v1/connections", nil, 200, &got)
		if len(got) != 0 {
			t.Errorf("carol has no policy but sees %+v", got)
		}
		e.must(admin, "GET", "/api/v1/connections?user=bob@example.com", nil, 200, &got)
		if len(got) != 2 {
			t.Errorf("admin's view of bob's connections: %+v", got)
		}
		e.fails(aliceTok, "GET", "/api/v1/connections?user=bob@example.com", nil, 403, "forbidden", "")

		// A second repository on the same port: usernames become user@repository.
		e.must(admin, "POST", "/api/v1/repositories", `{"name":"sales2","type":"postgresql","version":"15.4","hostname":"db2.example.com"}`, 201, nil)
		e.must(admin, "POST", "/api/v1/repositories/sales2/users", `{"username":"admin_user","secret":{"source":"env","name":"S2"}}`, 201, nil)
		e.must(admin, "POST", sp+"/bindings", `{"port":15432,"repository":"sales2"}`, 201, nil)
		e.must(admin, "POST", "/api/v1/impersonation-policies", `{"name":"s2","repository":"sales2","rules":[{"users":["ALICE@example.com"],"repository_users":["admin_user"]}]}`, 201, nil)
		e.must(aliceTok, "GET", "/api/v1/connections", nil, 200, &got)
		want := []gatehouse.Connection{conn("admin_user", "admin_user@sales"), conn("admin_user", "admin_user@sales2")}
		want[1].Repository = "sales2"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("connections on a shared port (-want +got):\n%s", diff)
		}

		// Updates: PUT replaces, PATCH changes what it names.
		var upd gatehouse.Repository
		e.must(admin, "PATCH", "/api/v1/repositories/sales", `{"tls_mode":"verify-full"}`, 200, &upd)
		if upd.TLSMode != "verify-full" || upd.Hostname != "db1.example.com" {
			t.Errorf("PATCH repository: %+v", upd)
		}
		e.must(admin, "PUT", "/api/v1/repositories/hr", `{"type":"mysql","version":"8.0","hostname":"hr.example.com","database":"hr"}`, 200, &upd)
		if upd.Hostname != "hr.example.com" || upd.Name != "hr" || upd.TLSMode != "prefer" {
			t.Errorf("PUT repository: %+v", upd)
		}
		e.must(admin, "PATCH", sp, `{"allow_unsupported_queries":true,"second_public_key":`+quote(publicKeyPEM(t, 2048))+`}`, 200, &sc)
		if !sc.AllowUnsupportedQueries || sc.SecondPublicKey == "" || sc.DisplayName != "east" {
			t.Errorf("PATCH sidecar: %+v", sc)
		}
		var envUser gatehouse.RepositoryUser
		e.must(admin, "PUT", "/api/v1/repositories/sales/users/env_user", `{"secret":{"source":"file","path":"/etc/pw"}}`, 200, &envUser)
		if envUser.Secret != (gatehouse.SecretRef{Source: "file", Path: "/etc/pw"}) {
			t.Errorf("PUT repository user: %+v", envUser.Secret)
		}
		e.must(admin, "PATCH", "/api/v1/groups/analysts", `{"members":["bob@example.com","carol@example.com"]}`, 200, &g)
		e.must(carolTok, "GET", "/api/v1/connections", nil, 200, &got)
		if len(got) != 2 {
			t.Errorf("carol joined analysts but sees %+v", got)
		}
		e.must(admin, "PATCH", "/api/v1/users/carol@example.com", `{"password":"new-carol-password"}`, 200, nil)
		e.login("carol@example.com", "new-carol-password")
		e.must(admin, "PUT", sp+"/ports/15432", `{"type":"postgresql","version":"15.2"}`, 200, &port)
		if port.Version != "15.2" {
			t.Errorf("PUT port: %+v", port)
		}

		// Lists.
		var repos []gatehouse.Repository
		e.must(admin, "GET", "/api/v1/repositories", nil, 200, &repos)
		var names []string
		for _, r := range repos {
			names = append(names, r.Name)
		}
		if diff := cmp.Diff([]string{"hr", "sales", "sales2"}, names); diff != "" {
			t.Errorf("repositories (-want +got):\n%s", diff)
		}
		for _, p := range []string{"/api/v1/sidecars", sp + "/ports", sp + "/bindings", "/api/v1/impersonation-policies", "/api/v1/impersonation-policies?repository=sales", "/api/v1/users", "/api/v1/groups", "/api/v1/tokens"} {
			var items []map[string]any
			e.must(admin, "GET", p, nil, 200, &items)
			if len(items) == 0 {
				t.Errorf("GET %s is empty", p)
			}
			for _, it := range items {
				if _, ok := it["password"]; ok {
					t.Errorf("GET %s shows a password", p)
				}
			}
		}

		// Deletes.
		e.must(admin, "DELETE", sp+"/bindings/15432/sales2", nil, 204, nil)
		e.fails(admin, "GET", sp+"/bindings/15432/sales2", nil, 404, "not_found", "")
		e.must(admin, "DELETE", "/api/v1/impersonation-policies/s2", nil, 204, nil)
		e.must(admin, "DELETE", "/api/v1/repositories/sales2", nil, 204, nil)
		e.must(admin, "DELETE", "/api/v1/groups/analysts", nil, 204, nil)
		e.must(admin, "DELETE", "/api/v1/users/carol@example.com", nil, 204, nil)
		e.fails(carolTok, "GET", "/api/v1/me", nil, 401, "unauthenticated", "")
		e.must(aliceTok, "DELETE", "/api/v1/tokens/"+tok.ID, nil, 204, nil)
		var revoked gatehouse.AccessToken
		e.must(aliceTok, "GET", "/api/v1/tokens/"+tok.ID, nil, 200, &revoked)
		if revoked.RevokedAt == nil {
			t.Errorf("revoked token %+v has no revoked_at", revoked)
		}
		e.must(aliceTok, "POST", "/api/v1/logout", nil, 204, nil)
		e.fails(aliceTok, "GET", "/api/v1/me", nil, 401, "unauthenticated", "")
	})
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}
