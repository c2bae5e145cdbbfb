package auth_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "gatehouse.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func bearer(secret string) *http.Request {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	return r
}

func addUser(t *testing.T, st *store.Store, name string, role gatehouse.Role, active bool, password string) {
	t.Helper()
	ctx := t.Context()
	if err := st.CreateUser(ctx, &gatehouse.User{Name: name, Role: role, Active: active}); err != nil {
		t.Fatal(err)
	}
	if password != "" {
		h, err := auth.HashPassword(password)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetUserPassword(ctx, name, h); err != nil {
			t.Fatal(err)
		}
	}
}

func code(err error) string {
	if err == nil {
		return ""
	}
	return gatehouse.ErrorCode(err)
}

func TestLoginAndAuthenticate(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	now := time.Now()
	a, err := auth.New(auth.Config{Store: st, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	addUser(t, st, "alice", gatehouse.RoleDataConsumer, true, "alice-password")
	addUser(t, st, "off", gatehouse.RoleDataConsumer, false, "off-password")
	addUser(t, st, "sso-only", gatehouse.RoleDataConsumer, true, "")

	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "alice", "nope-nope"},
		{"unknown user", "ghost", "alice-password"},
		{"inactive user", "off", "off-password"},
		{"no password set", "sso-only", ""},
	} {
		if _, _, err := a.Login(ctx, tc.user, tc.pw); code(err) != gatehouse.ECodeUnauthenticated || err.Error() != "invalid username or password" {
			t.Errorf("%s: Login = %v, want the one unauthenticated error", tc.name, err)
		}
	}

	secret, exp, err := a.Login(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	s := secret.Reveal()
	if !strings.HasPrefix(s, auth.SessionPrefix) || len(s) < 40 || !exp.Equal(now.UTC().Add(auth.DefaultSessionTTL)) {
		t.Errorf("session %q expiring %v", s, exp)
	}
	u, err := a.Authenticate(ctx, bearer(s))
	if err != nil || u.Name != "alice" || u.Role != gatehouse.RoleDataConsumer {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}

	for name, r := range map[string]*http.Request{
		"no header":     func() *http.Request { r, _ := http.NewRequest("GET", "/", nil); return r }(),
		"basic":         func() *http.Request { r := bearer(""); r.Header.Set("Authorization", "Basic YTpi"); return r }(),
		"empty bearer":  func() *http.Request { r := bearer(""); r.Header.Set("Authorization", "Bearer "); return r }(),
		"unknown":       bearer(auth.SessionPrefix + "unknown"),
		"access token":  bearer(gatehouse.TokenPrefix + strings.Repeat("x", 43)),
		"session+space": bearer(s + "x"),
	} {
		if _, err := a.Authenticate(ctx, r); code(err) != gatehouse.ECodeUnauthenticated {
			t.Errorf("%s: Authenticate = %v, want unauthenticated", name, err)
		}
	}

	// Group roles lift a data consumer to admin.
	if err := st.CreateGroup(ctx, &gatehouse.Group{Name: "admins", Role: gatehouse.RoleAdmin, Members: []string{"alice"}}); err != nil {
		t.Fatal(err)
	}
	if u, err := a.Authenticate(ctx, bearer(s)); err != nil || u.Role != gatehouse.RoleAdmin {
		t.Errorf("member of an ADMIN group: %+v, %v", u, err)
	}

	// Expiry, checked by the authenticator's own clock too.
	now = now.Add(auth.DefaultSessionTTL + time.Second)
	if _, err := a.Authenticate(ctx, bearer(s)); code(err) != gatehouse.ECodeUnauthenticated {
		t.Errorf("expired session: %v", err)
	}
	now = now.Add(-auth.DefaultSessionTTL)

	if err := a.Logout(ctx, bearer(s)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, bearer(s)); code(err) != gatehouse.ECodeUnauthenticated {
		t.Errorf("after logout: %v", err)
	}
	if err := a.Logout(ctx, bearer(s)); err != nil {
		t.Errorf("second logout: %v", err)
	}
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	var out bytes.Buffer
	if err := auth.Bootstrap(ctx, st, "", &out); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^    (\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no password in %q", out.String())
	}
	u, err := st.GetUser(ctx, gatehouse.BootstrapAdmin)
	if err != nil || u.Role != gatehouse.RoleAdmin || !u.Active {
		t.Fatalf("admin = %+v, %v", u, err)
	}
	h, _ := st.UserPasswordHash(ctx, gatehouse.BootstrapAdmin)
	if !auth.CheckPassword(h, m[1]) {
		t.Error("printed password does not match")
	}
	out.Reset()
	if err := auth.Bootstrap(ctx, st, "other-password", &out); err != nil || out.Len() != 0 {
		t.Errorf("second bootstrap: %v, printed %q", err, out.String())
	}
	if h2, _ := st.UserPasswordHash(ctx, gatehouse.BootstrapAdmin); h2 != h {
		t.Error("second bootstrap changed the password")
	}

	// A first start that stopped between creating the user and setting its password recovers.
	st2 := openStore(t)
	if err := st2.CreateUser(ctx, &gatehouse.User{Name: gatehouse.BootstrapAdmin, Role: gatehouse.RoleAdmin, Active: true}); err != nil {
		t.Fatal(err)
	}
	if err := auth.Bootstrap(ctx, st2, "given-password", &out); err != nil || out.Len() != 0 {
		t.Fatalf("recovering bootstrap: %v, printed %q", err, out.String())
	}
	if h, _ := st2.UserPasswordHash(ctx, gatehouse.BootstrapAdmin); !auth.CheckPassword(h, "given-password") {
		t.Error("recovering bootstrap did not set the password")
	}
}

func TestPasswords(t *testing.T) {
	if err := auth.ValidatePassword("password", "short"); code(err) != gatehouse.ECodeInvalid {
		t.Errorf("short password: %v", err)
	}
	if err := auth.ValidatePassword("password", strings.Repeat("x", 73)); code(err) != gatehouse.ECodeInvalid {
		t.Errorf("long password: %v", err)
	}
	h, err := auth.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !auth.CheckPassword(h, "correct horse") || auth.CheckPassword(h, "correct horsE") || auth.CheckPassword("", "") || auth.CheckPassword("garbage", "x") {
		t.Error("CheckPassword is wrong")
	}
}
