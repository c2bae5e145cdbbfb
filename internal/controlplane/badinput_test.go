package controlplane

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// fixture registers a small workflow and returns the sidecar path.
func fixture(t *testing.T, e *env, admin string) string {
	t.Helper()
	e.must(admin, "POST", "/api/v1/repositories", `{"name":"sales","type":"postgresql","version":"15","hostname":"db1.example.com","database":"postgres"}`, 201, nil)
	e.must(admin, "POST", "/api/v1/repositories", `{"name":"shop","type":"mysql","version":"8.0","hostname":"db2.example.com"}`, 201, nil)
	e.must(admin, "POST", "/api/v1/repositories/sales/users", `{"username":"reader","secret":{"source":"env","name":"READER_PW"}}`, 201, nil)
	var sc gatehouse.Sidecar
	e.must(admin, "POST", "/api/v1/sidecars", map[string]any{"display_name": "east", "hostname": "sidecar.example.com", "public_key": publicKeyPEM(t, 2048)}, 201, &sc)
	sp := "/api/v1/sidecars/" + sc.ID
	e.must(admin, "POST", sp+"/ports", `{"port":15432,"type":"postgresql","version":"15"}`, 201, nil)
	e.must(admin, "POST", sp+"/ports", `{"port":13306,"type":"mysql","version":"8.4"}`, 201, nil)
	e.must(admin, "POST", sp+"/bindings", `{"port":15432,"repository":"sales"}`, 201, nil)
	e.must(admin, "POST", "/api/v1/users", `{"name":"dc@example.com","password":"consumer-password"}`, 201, nil)
	e.must(admin, "POST", "/api/v1/impersonation-policies", `{"name":"readers","repository":"sales","rules":[{"users":["dc@example.com"],"repository_users":["reader"]}]}`, 201, nil)
	return sp
}

func TestBadInput(t *testing.T) {
	backends(t, func(t *testing.T, storeURL string) {
		e := startBackend(t, storeURL)
		admin := e.login("admin", adminPassword)
		sp := fixture(t, e, admin)
		smallKey := publicKeyPEM(t, 1024)
		repo := func(field, value string) string {
			m := map[string]any{"name": "r1", "type": "postgresql", "version": "15", "hostname": "h.example.com", "port": 5432, "tls_mode": "require"}
			var v any
			if err := json.Unmarshal([]byte(value), &v); err != nil {
				t.Fatal(err)
			}
			m[field] = v
			b, _ := json.Marshal(m)
			return string(b)
		}
		secret := func(s string) string { return `{"username":"u2","secret":` + s + `}` }

		tests := []struct {
			name         string
			method, path string
			body         string
			status       int
			code, field  string
			contains     string
			absent       string // a path that must still be 404 afterwards
		}{
			{"password pasted into a secret reference", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"env","name":"X","password":"hunter2"}`), 400, "invalid", "secret.password", "never accepts", "/api/v1/repositories/sales/users/u2"},
			{"unknown field", "POST", "/api/v1/repositories", repo("colour", `"red"`), 400, "invalid", "colour", "not a known field", "/api/v1/repositories/r1"},
			{"name with a space", "POST", "/api/v1/repositories", repo("name", `"my db"`), 400, "invalid", "name", "lowercase", "/api/v1/repositories/my%20db"},
			{"name with capitals", "POST", "/api/v1/repositories", repo("name", `"Sales"`), 400, "invalid", "name", "lowercase", "/api/v1/repositories/Sales"},
			{"unknown database type", "POST", "/api/v1/repositories", repo("type", `"db2"`), 400, "invalid", "type", "postgresql", "/api/v1/repositories/r1"},
			{"bad version", "POST", "/api/v1/repositories", repo("version", `"fifteen"`), 400, "invalid", "version", "dot-separated", "/api/v1/repositories/r1"},
			{"hostname with scheme", "POST", "/api/v1/repositories", repo("hostname", `"http://db.example.com"`), 400, "invalid", "hostname", "without a scheme", "/api/v1/repositories/r1"},
			{"hostname with underscore", "POST", "/api/v1/repositories", repo("hostname", `"db_1.example.com"`), 400, "invalid", "hostname", "RFC 1123", "/api/v1/repositories/r1"},
			{"port out of range", "POST", "/api/v1/repositories", repo("port", `70000`), 400, "invalid", "port", "between 1 and 65535", "/api/v1/repositories/r1"},
			{"port as a string", "POST", "/api/v1/repositories", repo("port", `"5432"`), 400, "invalid", "port", "integer", "/api/v1/repositories/r1"},
			{"bad tls mode", "POST", "/api/v1/repositories", repo("tls_mode", `"strict"`), 400, "invalid", "tls_mode", "verify-full", "/api/v1/repositories/r1"},
			{"bad CA bundle", "POST", "/api/v1/repositories", repo("ca_bundle", `"not a pem"`), 400, "invalid", "ca_bundle", "PEM", "/api/v1/repositories/r1"},
			{"duplicate repository", "POST", "/api/v1/repositories", `{"name":"sales","type":"postgresql","version":"15","hostname":"x.example.com"}`, 409, "conflict", "", "", ""},
			{"two JSON values", "POST", "/api/v1/repositories", repo("name", `"r1"`) + `{}`, 400, "invalid", "", "exactly one", "/api/v1/repositories/r1"},

			{"unknown secret source", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"vault"}`), 400, "invalid", "secret.source", "aws-secrets-manager", ""},
			{"bad ARN", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"aws-secrets-manager","arn":"arn:aws:s3:::bucket"}`), 400, "invalid", "secret.arn", "Secrets Manager ARN", "/api/v1/repositories/sales/users/u2"},
			{"missing ARN", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"aws-secrets-manager"}`), 400, "invalid", "secret.arn", "required", ""},
			{"bad json_path", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"aws-secrets-manager","arn":"arn:aws:secretsmanager:us-east-2:111111111111:secret:x-AbCdEf","json_path":"a..b"}`), 400, "invalid", "secret.json_path", "dot-separated", ""},
			{"field of another source", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"env","name":"X","arn":"arn:aws:secretsmanager:us-east-2:111111111111:secret:x"}`), 400, "invalid", "secret.arn", "not used by secret source env", ""},
			{"http vault URI", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"azure-key-vault","vault_uri":"http://v.vault.azure.net/","secret_name":"s"}`), 400, "invalid", "secret.vault_uri", "https", ""},
			{"missing secret name", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"azure-key-vault","vault_uri":"https://v.vault.azure.net/"}`), 400, "invalid", "secret.secret_name", "required", ""},
			{"bad key vault version", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"azure-key-vault","vault_uri":"https://v.vault.azure.net/","secret_name":"s","version":"v1"}`), 400, "invalid", "secret.version", "32-character", ""},
			{"bad env name", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"env","name":"1X"}`), 400, "invalid", "secret.name", "environment variable", ""},
			{"relative file path", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"file","path":"pw.txt"}`), 400, "invalid", "secret.path", "absolute", ""},
			{"bad region", "POST", "/api/v1/repositories/sales/users", secret(`{"source":"aws-rds-iam","region":"mars"}`), 400, "invalid", "secret.region", "AWS region", ""},
			{"username with @", "POST", "/api/v1/repositories/sales/users", `{"username":"a@b","secret":{"source":"azure-entra"}}`, 400, "invalid", "username", "'@'", ""},
			{"duplicate repository user", "POST", "/api/v1/repositories/sales/users", `{"username":"reader","secret":{"source":"azure-entra"}}`, 409, "conflict", "", "", ""},
			{"user of a missing repository", "POST", "/api/v1/repositories/nope/users", `{"username":"u","secret":{"source":"azure-entra"}}`, 404, "not_found", "", "nope", ""},

			{"sidecar without key", "POST", "/api/v1/sidecars", `{"display_name":"x","hostname":"s.example.com"}`, 400, "invalid", "public_key", "required", ""},
			{"sidecar with a private key", "POST", "/api/v1/sidecars", `{"display_name":"x","hostname":"s.example.com","public_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`, 400, "invalid", "public_key", "private key", ""},
			{"sidecar with a small key", "POST", "/api/v1/sidecars", `{"display_name":"x","hostname":"s.example.com","public_key":` + quote(smallKey) + `}`, 400, "invalid", "public_key", "1024-bit", ""},
			{"sidecar with a bad second key", "POST", "/api/v1/sidecars", `{"display_name":"x","hostname":"s.example.com","public_key":` + quote(publicKeyPEM(t, 2048)) + `,"second_public_key":"nope"}`, 400, "invalid", "second_public_key", "PEM", ""},
			{"sidecar without display name", "POST", "/api/v1/sidecars", `{"hostname":"s.example.com"}`, 400, "invalid", "display_name", "required", ""},
			{"sidecar hostname with scheme", "POST", "/api/v1/sidecars", `{"display_name":"x","hostname":"https://s.example.com"}`, 400, "invalid", "hostname", "scheme", ""},
			{"missing sidecar", "GET", "/api/v1/sidecars/nope", "", 404, "not_found", "", "", ""},

			{"duplicate port", "POST", sp + "/ports", `{"port":15432,"type":"postgresql","version":"15"}`, 409, "conflict", "", "", ""},
			{"port zero", "POST", sp + "/ports", `{"port":0,"type":"postgresql","version":"15"}`, 400, "invalid", "port", "between", ""},
			{"port bad type", "POST", sp + "/ports", `{"port":1,"type":"sybase","version":"15"}`, 400, "invalid", "type", "postgresql", ""},
			{"port missing version", "POST", sp + "/ports", `{"port":1,"type":"postgresql"}`, 400, "invalid", "version", "required", ""},
			{"port on a missing sidecar", "POST", "/api/v1/sidecars/nope/ports", `{"port":1,"type":"postgresql","version":"15"}`, 404, "not_found", "", "", ""},

			{"binding across types", "POST", sp + "/bindings", `{"port":15432,"repository":"shop"}`, 400, "invalid", "repository", "same database type", sp + "/bindings/15432/shop"},
			{"binding across versions", "POST", sp + "/bindings", `{"port":13306,"repository":"shop"}`, 400, "invalid", "repository", "major.minor", sp + "/bindings/13306/shop"},
			{"binding to a missing port", "POST", sp + "/bindings", `{"port":1,"repository":"sales"}`, 400, "invalid", "port", "no listener port 1", ""},
			{"binding to a missing repository", "POST", sp + "/bindings", `{"port":15432,"repository":"nope"}`, 400, "invalid", "repository", "does not exist", ""},
			{"duplicate binding", "POST", sp + "/bindings", `{"port":15432,"repository":"sales"}`, 409, "conflict", "", "", ""},

			{"policy without rules", "POST", "/api/v1/impersonation-policies", `{"name":"p","repository":"sales","rules":[]}`, 400, "invalid", "rules", "at least one rule", "/api/v1/impersonation-policies/p"},
			{"policy rule without principals", "POST", "/api/v1/impersonation-policies", `{"name":"p","repository":"sales","rules":[{"repository_users":["reader"]}]}`, 400, "invalid", "rules[0]", "user or group", "/api/v1/impersonation-policies/p"},
			{"policy rule without repository users", "POST", "/api/v1/impersonation-policies", `{"name":"p","repository":"sales","rules":[{"users":["a"]}]}`, 400, "invalid", "rules[0].repository_users", "at least one", ""},
			{"policy on a missing repository", "POST", "/api/v1/impersonation-policies", `{"name":"p","repository":"nope","rules":[{"users":["a"],"repository_users":["reader"]}]}`, 400, "invalid", "repository", "", "/api/v1/impersonation-policies/p"},
			{"policy naming a missing repository user", "POST", "/api/v1/impersonation-policies", `{"name":"p","repository":"sales","rules":[{"users":["a"],"repository_users":["ghost"]}]}`, 400, "invalid", "rules[0].repository_users", "", "/api/v1/impersonation-policies/p"},
			{"duplicate policy", "POST", "/api/v1/impersonation-policies", `{"name":"readers","repository":"sales","rules":[{"users":["a"],"repository_users":["reader"]}]}`, 409, "conflict", "", "", ""},

			{"user with bad role", "POST", "/api/v1/users", `{"name":"x@example.com","role":"ROOT"}`, 400, "invalid", "role", "ADMIN or DATA_CONSUMER", "/api/v1/users/x@example.com"},
			{"user with short password", "POST", "/api/v1/users", `{"name":"x@example.com","password":"short"}`, 400, "invalid", "password", "at least 8", "/api/v1/users/x@example.com"},
			{"user with bad email", "POST", "/api/v1/users", `{"name":"x@example.com","email":"nope"}`, 400, "invalid", "email", "e-mail", "/api/v1/users/x@example.com"},
			{"user with groups", "POST", "/api/v1/users", `{"name":"x@example.com","groups":["g"]}`, 400, "invalid", "groups", "read-only", "/api/v1/users/x@example.com"},
			{"duplicate user", "POST", "/api/v1/users", `{"name":"dc@example.com"}`, 409, "conflict", "", "", ""},
			{"group with unknown member", "POST", "/api/v1/groups", `{"name":"g","members":["ghost@example.com"]}`, 400, "invalid", "members", "", "/api/v1/groups/g"},

			{"rename by PUT", "PUT", "/api/v1/repositories/sales", `{"name":"other","type":"postgresql","version":"15","hostname":"db1.example.com"}`, 400, "invalid", "name", "cannot be changed", "/api/v1/repositories/other"},
			{"PATCH with a bad value", "PATCH", "/api/v1/repositories/sales", `{"port":70000}`, 400, "invalid", "port", "between", ""},
			{"PATCH of a missing object", "PATCH", "/api/v1/repositories/nope", `{"port":1}`, 404, "not_found", "", "", ""},
			{"version change that breaks a binding", "PATCH", "/api/v1/repositories/sales", `{"version":"16"}`, 409, "conflict", "", "", ""},
			{"bad cascade value", "DELETE", "/api/v1/repositories/sales?cascade=yes", "", 400, "invalid", "cascade", "true or false", ""},
			{"missing repository", "GET", "/api/v1/repositories/nope", "", 404, "not_found", "", `"nope"`, ""},
			{"too large", "POST", "/api/v1/repositories", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 400, "invalid", "", "larger than", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e.t = t
				msg := e.fails(admin, tc.method, tc.path, tc.body, tc.status, tc.code, tc.field)
				if !strings.Contains(msg, tc.contains) {
					t.Errorf("message %q does not contain %q", msg, tc.contains)
				}
				if tc.absent != "" {
					if status, b := e.call(admin, "GET", tc.absent, nil); status != 404 {
						t.Errorf("after the refused call, GET %s = %d %s, want 404", tc.absent, status, b)
					}
				}
			})
		}
		e.t = t
		// The refused secret never reached the store or the log.
		if strings.Contains(e.logs.String(), "hunter2") {
			t.Error("the pasted secret reached the log")
		}
		var rep gatehouse.Repository
		e.must(admin, "GET", "/api/v1/repositories/sales", nil, 200, &rep)
		if rep.Version != "15" || rep.Port != 5432 {
			t.Errorf("refused updates changed the repository: %+v", rep)
		}
	})
}

func TestDeleteWithDependents(t *testing.T) {
	backends(t, func(t *testing.T, storeURL string) {
		e := startBackend(t, storeURL)
		admin := e.login("admin", adminPassword)
		sp := fixture(t, e, admin)

		msg := e.fails(admin, "DELETE", "/api/v1/repositories/sales", nil, 409, "conflict", "")
		for _, dep := range []string{"15432", "readers"} {
			if !strings.Contains(msg, dep) {
				t.Errorf("refusal %q does not list dependent %q", msg, dep)
			}
		}
		e.must(admin, "GET", "/api/v1/repositories/sales", nil, 200, nil)
		msg = e.fails(admin, "DELETE", "/api/v1/repositories/sales/users/reader", nil, 409, "conflict", "")
		if !strings.Contains(msg, "readers") {
			t.Errorf("refusal %q does not name the policy", msg)
		}
		e.fails(admin, "DELETE", sp+"/ports/15432", nil, 409, "conflict", "")
		e.fails(admin, "DELETE", sp, nil, 409, "conflict", "")

		e.must(admin, "DELETE", "/api/v1/repositories/sales?cascade=true", nil, 204, nil)
		e.fails(admin, "GET", "/api/v1/repositories/sales", nil, 404, "not_found", "")
		e.fails(admin, "GET", "/api/v1/impersonation-policies/readers", nil, 404, "not_found", "")
		e.fails(admin, "GET", sp+"/bindings/15432/sales", nil, 404, "not_found", "")
		e.fails(admin, "GET", "/api/v1/repositories/sales/users/reader", nil, 404, "not_found", "")
		e.must(admin, "DELETE", sp+"?cascade=true", nil, 204, nil)
		e.fails(admin, "GET", sp+"/ports/13306", nil, 404, "not_found", "")
		e.fails(admin, "DELETE", "/api/v1/repositories/sales", nil, 404, "not_found", "")
	})
}

func TestTokens(t *testing.T) {
	backends(t, func(t *testing.T, storeURL string) {
		e := startBackend(t, storeURL)
		admin := e.login("admin", adminPassword)
		e.must(admin, "POST", "/api/v1/users", `{"name":"alice","password":"alice-password"}`, 201, nil)
		e.must(admin, "POST", "/api/v1/users", `{"name":"bob","password":"bob-password"}`, 201, nil)
		alice, bob := e.login("alice", "alice-password"), e.login("bob", "bob-password")

		msg := e.fails(alice, "POST", "/api/v1/tokens", `{"ttl":"25h"}`, 400, "invalid", "ttl")
		if !strings.Contains(msg, "24h") {
			t.Errorf("TTL refusal %q does not name the 24h maximum", msg)
		}
		e.fails(alice, "POST", "/api/v1/tokens", `{"ttl":"soon"}`, 400, "invalid", "ttl")
		e.fails(alice, "POST", "/api/v1/tokens", `{"ttl":"-1h"}`, 400, "invalid", "ttl")
		e.fails(alice, "POST", "/api/v1/tokens", `{"ttl":"1h","owner":"bob"}`, 400, "invalid", "owner")
		e.fails(alice, "POST", "/api/v1/tokens", `{"name":"bad\u0001name"}`, 400, "invalid", "name")

		var s struct {
			MaxTokenTTL string `json:"max_token_ttl"`
		}
		e.must(admin, "GET", "/api/v1/settings", nil, 200, &s)
		if s.MaxTokenTTL != "24h" {
			t.Errorf("default max_token_ttl = %q, want 24h", s.MaxTokenTTL)
		}
		e.fails(alice, "PUT", "/api/v1/settings", `{"max_token_ttl":"1000h"}`, 403, "forbidden", "")
		e.fails(admin, "PUT", "/api/v1/settings", `{"max_token_ttl":"forever"}`, 400, "invalid", "max_token_ttl")
		e.fails(admin, "PUT", "/api/v1/settings", `{"max_token_ttl":"2h","other":1}`, 400, "invalid", "other")
		e.must(admin, "PUT", "/api/v1/settings", `{"max_token_ttl":"2h"}`, 200, &s)
		if s.MaxTokenTTL != "2h" {
			t.Errorf("max_token_ttl = %q after setting 2h", s.MaxTokenTTL)
		}
		msg = e.fails(alice, "POST", "/api/v1/tokens", `{"ttl":"3h"}`, 400, "invalid", "ttl")
		if !strings.Contains(msg, "2h") {
			t.Errorf("TTL refusal %q does not name the 2h maximum", msg)
		}

		type tok struct {
			ID        string    `json:"id"`
			Token     string    `json:"token"`
			Owner     string    `json:"owner"`
			ExpiresAt time.Time `json:"expires_at"`
			CreatedAt time.Time `json:"created_at"`
		}
		var a1, a2, b1 tok
		e.must(alice, "POST", "/api/v1/tokens", `{"ttl":"2h","name":"laptop"}`, 201, &a1)
		e.must(alice, "POST", "/api/v1/tokens", `{}`, 201, &a2)
		if d := a2.ExpiresAt.Sub(a2.CreatedAt); d < time.Hour-5*time.Second || d > time.Hour+5*time.Second {
			t.Errorf("default TTL %v, want 1h", d)
		}
		e.must(bob, "POST", "/api/v1/tokens", `{"ttl":"90m"}`, 201, &b1)
		if a1.Token == a2.Token || a1.ID == a2.ID {
			t.Error("two tokens share a secret or an ID")
		}

		ids := func(tokn, path string) []string {
			var list []gatehouse.AccessToken
			e.must(tokn, "GET", path, nil, 200, &list)
			var out []string
			for _, x := range list {
				out = append(out, x.Owner+"/"+x.ID)
			}
			return out
		}
		if got := ids(alice, "/api/v1/tokens"); len(got) != 2 || !strings.HasPrefix(got[0], "alice/") || !strings.HasPrefix(got[1], "alice/") {
			t.Errorf("alice lists %v, want only her two tokens", got)
		}
		if got := ids(admin, "/api/v1/tokens"); len(got) != 3 {
			t.Errorf("admin lists %v, want all three tokens", got)
		}
		if got := ids(admin, "/api/v1/tokens?owner=bob"); len(got) != 1 {
			t.Errorf("admin lists %v for bob, want one", got)
		}
		e.fails(alice, "GET", "/api/v1/tokens?owner=bob", nil, 403, "forbidden", "")
		e.fails(alice, "GET", "/api/v1/tokens/"+b1.ID, nil, 404, "not_found", "")
		e.fails(alice, "DELETE", "/api/v1/tokens/"+b1.ID, nil, 404, "not_found", "")
		e.must(bob, "GET", "/api/v1/tokens/"+b1.ID, nil, 200, nil)
		e.must(admin, "DELETE", "/api/v1/tokens/"+b1.ID, nil, 204, nil)
		var got gatehouse.AccessToken
		e.must(bob, "GET", "/api/v1/tokens/"+b1.ID, nil, 200, &got)
		if got.RevokedAt == nil || got.Active(time.Now()) {
			t.Errorf("admin revoked bob's token but it is %+v", got)
		}
		e.fails(alice, "GET", "/api/v1/tokens/nope", nil, 404, "not_found", "")
		// An access token is not an API credential.
		e.fails(a1.Token, "GET", "/api/v1/tokens", nil, 401, "unauthenticated", "")
	})
}
