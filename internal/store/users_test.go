package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/store"
)

func TestUsersAndGroups(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		ann := user("ann@example.com")
		must(t, s.CreateUser(ctx, ann))
		must(t, s.CreateUser(ctx, user("bob@example.com")))
		must(t, s.CreateUser(ctx, user("cid@example.com")))
		wantErr(t, s.CreateUser(ctx, user("ann@example.com")), gatehouse.ECodeConflict, "")
		wantErr(t, s.CreateUser(ctx, &gatehouse.User{Name: "x", Role: "ROOT"}), gatehouse.ECodeInvalid, "role")
		_, err := s.GetUser(ctx, "nope")
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		// A group whose members include a non-user is refused, and nothing of it is left.
		before := version(t, s)
		wantErr(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "analysts", Members: []string{"ann@example.com", "ghost@example.com"}}), gatehouse.ECodeInvalid, "members")
		_, err = s.GetGroup(ctx, "analysts")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		if v := version(t, s); v != before {
			t.Errorf("failed group create changed the config version %d -> %d", before, v)
		}

		analysts := &gatehouse.Group{Name: "analysts", DisplayName: "Analysts", Members: []string{"bob@example.com", "ann@example.com", "ann@example.com"}}
		must(t, s.CreateGroup(ctx, analysts))
		if diff := cmp.Diff([]string{"ann@example.com", "bob@example.com"}, analysts.Members); diff != "" {
			t.Errorf("stored members (-want +got):\n%s", diff)
		}
		must(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "admins", Role: gatehouse.RoleAdmin, Members: []string{"ann@example.com"}}))
		must(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "empty"}))
		wantErr(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "admins"}), gatehouse.ECodeConflict, "")
		got, err := s.GetGroup(ctx, "analysts")
		must(t, err)
		if diff := cmp.Diff(analysts, got); diff != "" {
			t.Errorf("GetGroup (-want +got):\n%s", diff)
		}

		gotUser, err := s.GetUser(ctx, "ann@example.com")
		must(t, err)
		ann.Groups = []string{"admins", "analysts"}
		if diff := cmp.Diff(ann, gotUser); diff != "" {
			t.Errorf("GetUser (-want +got):\n%s", diff)
		}

		// A failed update of the members keeps the old ones.
		wantErr(t, s.UpdateGroup(ctx, &gatehouse.Group{Name: "analysts", Members: []string{"cid@example.com", "ghost"}}), gatehouse.ECodeInvalid, "members")
		got, err = s.GetGroup(ctx, "analysts")
		must(t, err)
		if diff := cmp.Diff(analysts, got); diff != "" {
			t.Errorf("after failed UpdateGroup (-want +got):\n%s", diff)
		}
		upd := &gatehouse.Group{Name: "analysts", Members: []string{"cid@example.com"}}
		must(t, s.UpdateGroup(ctx, upd))
		got, err = s.GetGroup(ctx, "analysts")
		must(t, err)
		if diff := cmp.Diff(upd, got); diff != "" {
			t.Errorf("after UpdateGroup (-want +got):\n%s", diff)
		}
		wantErr(t, s.UpdateGroup(ctx, &gatehouse.Group{Name: "nope"}), gatehouse.ECodeNotFound, "")

		groups, err := s.ListGroups(ctx)
		must(t, err)
		var summary []string
		for _, g := range groups {
			summary = append(summary, fmt.Sprintf("%s%v", g.Name, g.Members))
		}
		if diff := cmp.Diff([]string{"admins[ann@example.com]", "analysts[cid@example.com]", "empty[]"}, summary); diff != "" {
			t.Errorf("ListGroups (-want +got):\n%s", diff)
		}
		users, err := s.ListUsers(ctx)
		must(t, err)
		summary = nil
		for _, u := range users {
			summary = append(summary, fmt.Sprintf("%s%v", u.Name, u.Groups))
		}
		if diff := cmp.Diff([]string{"ann@example.com[admins]", "bob@example.com[]", "cid@example.com[analysts]"}, summary); diff != "" {
			t.Errorf("ListUsers (-want +got):\n%s", diff)
		}

		ann.DisplayName, ann.Active = "Ann", false
		must(t, s.UpdateUser(ctx, ann))
		gotUser, err = s.GetUser(ctx, "ann@example.com")
		must(t, err)
		if diff := cmp.Diff(ann, gotUser); diff != "" {
			t.Errorf("after UpdateUser (-want +got):\n%s", diff)
		}
		wantErr(t, s.UpdateUser(ctx, user("nope")), gatehouse.ECodeNotFound, "")

		h, err := s.UserPasswordHash(ctx, "bob@example.com")
		must(t, err)
		if h != "" {
			t.Errorf("new user has password hash %q", h)
		}
		must(t, s.SetUserPassword(ctx, "bob@example.com", "$2a$10$abcdefghijklmnopqrstuv"))
		h, err = s.UserPasswordHash(ctx, "bob@example.com")
		must(t, err)
		if h != "$2a$10$abcdefghijklmnopqrstuv" {
			t.Errorf("password hash = %q", h)
		}
		wantErr(t, s.SetUserPassword(ctx, "nope", "x"), gatehouse.ECodeNotFound, "")
		_, err = s.UserPasswordHash(ctx, "nope")
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		must(t, s.DeleteGroup(ctx, "admins"))
		wantErr(t, s.DeleteGroup(ctx, "admins"), gatehouse.ECodeNotFound, "")
		gotUser, err = s.GetUser(ctx, "ann@example.com")
		must(t, err)
		if gotUser.Groups != nil {
			t.Errorf("groups after group delete: %v", gotUser.Groups)
		}
	})
}

func TestDeleteUserRevokesTokensAndSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateUser(ctx, user("ann")))
		must(t, s.CreateUser(ctx, user("bob")))
		must(t, s.CreateGroup(ctx, &gatehouse.Group{Name: "g", Members: []string{"ann", "bob"}}))
		exp := time.Now().Add(time.Hour)
		must(t, s.CreateToken(ctx, &gatehouse.AccessToken{ID: "t1", Owner: "ann", Hash: hashOf("one"), ExpiresAt: exp}))
		must(t, s.CreateToken(ctx, &gatehouse.AccessToken{ID: "t2", Owner: "bob", Hash: hashOf("two"), ExpiresAt: exp}))
		must(t, s.CreateSession(ctx, &gatehouse.LoginSession{Hash: hashOf("s1"), User: "ann", ExpiresAt: exp}))

		before := version(t, s)
		must(t, s.DeleteUser(ctx, "ann"))
		if v := version(t, s); v != before+1 {
			t.Errorf("DeleteUser: config version %d -> %d, want one increment", before, v)
		}
		wantErr(t, s.DeleteUser(ctx, "ann"), gatehouse.ECodeNotFound, "")
		tok, err := s.GetToken(ctx, "t1")
		must(t, err)
		if tok.RevokedAt == nil || tok.Active(time.Now()) {
			t.Errorf("token of deleted user not revoked: %+v", tok)
		}
		tok, err = s.GetToken(ctx, "t2")
		must(t, err)
		if tok.RevokedAt != nil {
			t.Errorf("another user's token was revoked")
		}
		_, err = s.SessionByHash(ctx, hashOf("s1"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		g, err := s.GetGroup(ctx, "g")
		must(t, err)
		if diff := cmp.Diff([]string{"bob"}, g.Members); diff != "" {
			t.Errorf("members after user delete (-want +got):\n%s", diff)
		}
		// The name can be used again, without the old memberships.
		must(t, s.CreateUser(ctx, user("ann")))
		u, err := s.GetUser(ctx, "ann")
		must(t, err)
		if u.Groups != nil {
			t.Errorf("recreated user has groups %v", u.Groups)
		}
	})
}

func TestTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateUser(ctx, user("ann")))
		must(t, s.CreateUser(ctx, user("bob")))
		exp := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
		t1 := &gatehouse.AccessToken{ID: "tok1", Name: "laptop", Owner: "ann", Hash: hashOf("gh1_one"), ExpiresAt: exp}
		must(t, s.CreateToken(ctx, t1))
		time.Sleep(2 * time.Millisecond)
		t2 := &gatehouse.AccessToken{ID: "tok2", Owner: "bob", Hash: hashOf("gh1_two"), ExpiresAt: exp}
		must(t, s.CreateToken(ctx, t2))
		time.Sleep(2 * time.Millisecond)
		t3 := &gatehouse.AccessToken{ID: "tok3", Owner: "ann", Hash: hashOf("gh1_three"), ExpiresAt: exp}
		must(t, s.CreateToken(ctx, t3))

		tests := []struct {
			name        string
			call        func() error
			code, field string
		}{
			{"duplicate id", func() error {
				return s.CreateToken(ctx, &gatehouse.AccessToken{ID: "tok1", Owner: "ann", Hash: hashOf("x"), ExpiresAt: exp})
			}, gatehouse.ECodeConflict, ""},
			{"duplicate hash", func() error {
				return s.CreateToken(ctx, &gatehouse.AccessToken{ID: "tok9", Owner: "ann", Hash: hashOf("gh1_one"), ExpiresAt: exp})
			}, gatehouse.ECodeConflict, ""},
			{"missing owner", func() error {
				return s.CreateToken(ctx, &gatehouse.AccessToken{ID: "tok9", Owner: "nobody", Hash: hashOf("y"), ExpiresAt: exp})
			}, gatehouse.ECodeInvalid, "owner"},
			{"bad hash", func() error {
				return s.CreateToken(ctx, &gatehouse.AccessToken{ID: "tok9", Owner: "ann", Hash: "gh1_secret", ExpiresAt: exp})
			}, gatehouse.ECodeInvalid, "hash"},
			{"get missing", func() error { _, err := s.GetToken(ctx, "nope"); return err }, gatehouse.ECodeNotFound, ""},
			{"hash missing", func() error { _, err := s.TokenByHash(ctx, hashOf("nope")); return err }, gatehouse.ECodeNotFound, ""},
			{"revoke missing", func() error { return s.RevokeToken(ctx, "nope", time.Now()) }, gatehouse.ECodeNotFound, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.call(), tt.code, tt.field) })
		}

		got, err := s.TokenByHash(ctx, hashOf("gh1_one"))
		must(t, err)
		if diff := cmp.Diff(t1, got); diff != "" {
			t.Errorf("TokenByHash (-want +got):\n%s", diff)
		}
		if !got.ExpiresAt.Equal(exp) {
			t.Errorf("ExpiresAt %v, want %v", got.ExpiresAt, exp)
		}

		list, err := s.ListTokens(ctx, "ann")
		must(t, err)
		if diff := cmp.Diff([]gatehouse.AccessToken{*t1, *t3}, list); diff != "" {
			t.Errorf("ListTokens(ann) (-want +got):\n%s", diff)
		}
		list, err = s.ListTokens(ctx, "")
		must(t, err)
		if len(list) != 3 || list[0].ID != "tok1" || list[1].ID != "tok2" || list[2].ID != "tok3" {
			t.Errorf("ListTokens(\"\") not in creation order: %+v", list)
		}

		at := time.Now().UTC().Truncate(time.Microsecond)
		before := version(t, s)
		must(t, s.RevokeToken(ctx, "tok1", at))
		must(t, s.RevokeToken(ctx, "tok1", at.Add(time.Hour)))
		if v := version(t, s); v != before+1 {
			t.Errorf("revoke twice: config version %d -> %d, want one increment", before, v)
		}
		got, err = s.GetToken(ctx, "tok1")
		must(t, err)
		if got.RevokedAt == nil || !got.RevokedAt.Equal(at) {
			t.Errorf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, at)
		}
	})
}

func TestSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateUser(ctx, user("ann")))
		live := &gatehouse.LoginSession{Hash: hashOf("live"), User: "ann", ExpiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)}
		must(t, s.CreateSession(ctx, live))
		must(t, s.CreateSession(ctx, &gatehouse.LoginSession{Hash: hashOf("old"), User: "ann", ExpiresAt: time.Now().Add(-time.Minute)}))
		wantErr(t, s.CreateSession(ctx, &gatehouse.LoginSession{Hash: hashOf("x"), User: "nobody", ExpiresAt: time.Now().Add(time.Hour)}), gatehouse.ECodeInvalid, "user")
		wantErr(t, s.CreateSession(ctx, &gatehouse.LoginSession{Hash: hashOf("live"), User: "ann", ExpiresAt: time.Now().Add(time.Hour)}), gatehouse.ECodeConflict, "")

		got, err := s.SessionByHash(ctx, hashOf("live"))
		must(t, err)
		if diff := cmp.Diff(live, got); diff != "" {
			t.Errorf("SessionByHash (-want +got):\n%s", diff)
		}
		_, err = s.SessionByHash(ctx, hashOf("old"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		_, err = s.SessionByHash(ctx, hashOf("none"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		must(t, s.DeleteSession(ctx, hashOf("live")))
		must(t, s.DeleteSession(ctx, hashOf("live")))
		_, err = s.SessionByHash(ctx, hashOf("live"))
		wantErr(t, err, gatehouse.ECodeNotFound, "")
	})
}

// TestConfigVersion checks that every synced change bumps the version once, in the same
// transaction, and that reads, sessions, settings, instances, JTIs and refused changes do not.
func TestConfigVersion(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		sc := sidecar("east")
		steps := []struct {
			name string
			call func() error
			bump bool
		}{
			{"create repository", func() error { return s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")) }, true},
			{"get repository", func() error { _, err := s.GetRepository(ctx, "sales"); return err }, false},
			{"list repositories", func() error { _, err := s.ListRepositories(ctx); return err }, false},
			{"update repository", func() error { return s.UpdateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15.1")) }, true},
			{"create repository user", func() error { return s.CreateRepositoryUser(ctx, repoUser("sales", "reader")) }, true},
			{"update repository user", func() error { return s.UpdateRepositoryUser(ctx, repoUser("sales", "reader")) }, true},
			{"create sidecar", func() error { return s.CreateSidecar(ctx, sc) }, true},
			{"update sidecar", func() error { return s.UpdateSidecar(ctx, sc) }, true},
			{"create port", func() error {
				return s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: sc.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"})
			}, true},
			{"update port", func() error {
				return s.UpdateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: sc.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15.2"})
			}, true},
			{"create binding", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: sc.ID, Port: 15432, Repository: "sales"})
			}, true},
			{"list bindings", func() error { _, err := s.ListBindings(ctx, ""); return err }, false},
			{"create policy", func() error {
				return s.CreateImpersonationPolicy(ctx, policy("p", "sales", rule([]string{"g"}, "reader")))
			}, true},
			{"update policy", func() error {
				return s.UpdateImpersonationPolicy(ctx, policy("p", "sales", rule([]string{"h"}, "reader")))
			}, true},
			{"create user", func() error { return s.CreateUser(ctx, user("ann")) }, true},
			{"update user", func() error { return s.UpdateUser(ctx, user("ann")) }, true},
			{"set password", func() error { return s.SetUserPassword(ctx, "ann", "hash") }, true},
			{"create group", func() error { return s.CreateGroup(ctx, &gatehouse.Group{Name: "g", Members: []string{"ann"}}) }, true},
			{"update group", func() error { return s.UpdateGroup(ctx, &gatehouse.Group{Name: "g"}) }, true},
			{"create token", func() error {
				return s.CreateToken(ctx, &gatehouse.AccessToken{ID: "t", Owner: "ann", Hash: hashOf("t"), ExpiresAt: time.Now().Add(time.Hour)})
			}, true},
			{"token by hash", func() error { _, err := s.TokenByHash(ctx, hashOf("t")); return err }, false},
			{"revoke token", func() error { return s.RevokeToken(ctx, "t", time.Now()) }, true},
			{"create session", func() error {
				return s.CreateSession(ctx, &gatehouse.LoginSession{Hash: hashOf("s"), User: "ann", ExpiresAt: time.Now().Add(time.Hour)})
			}, false},
			{"session by hash", func() error { _, err := s.SessionByHash(ctx, hashOf("s")); return err }, false},
			{"delete session", func() error { return s.DeleteSession(ctx, hashOf("s")) }, false},
			{"set setting", func() error { return s.SetSetting(ctx, "max_token_ttl", "1h0m0s") }, false},
			{"upsert instance", func() error {
				return s.UpsertInstance(ctx, &gatehouse.SidecarInstance{SidecarID: sc.ID, InstanceID: "i"})
			}, false},
			{"use jti", func() error { return s.UseJTI(ctx, "jti-1", time.Now().Add(time.Minute)) }, false},
			{"refused duplicate", func() error {
				if err := s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")); gatehouse.ErrorCode(err) != gatehouse.ECodeConflict {
					return fmt.Errorf("want conflict, got %v", err)
				}
				return nil
			}, false},
			{"delete binding", func() error { return s.DeleteBinding(ctx, sc.ID, 15432, "sales") }, true},
			{"delete policy", func() error { return s.DeleteImpersonationPolicy(ctx, "p") }, true},
			{"delete group", func() error { return s.DeleteGroup(ctx, "g") }, true},
			{"delete user", func() error { return s.DeleteUser(ctx, "ann") }, true},
			{"delete port", func() error { return s.DeleteListenerPort(ctx, sc.ID, 15432, false) }, true},
			{"delete sidecar", func() error { return s.DeleteSidecar(ctx, sc.ID, false) }, true},
			{"delete repository user", func() error { return s.DeleteRepositoryUser(ctx, "sales", "reader", false) }, true},
			{"delete repository", func() error { return s.DeleteRepository(ctx, "sales", false) }, true},
		}
		v := version(t, s)
		if v != 0 {
			t.Errorf("a new store starts at config version %d, want 0", v)
		}
		for _, st := range steps {
			if err := st.call(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			want := v
			if st.bump {
				want++
			}
			got := version(t, s)
			if got != want {
				t.Errorf("%s: config version %d -> %d, want %d", st.name, v, got, want)
			}
			v = got
		}
	})
}

func TestSettingsAndInstances(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		v, err := s.Setting(ctx, "max_token_ttl")
		must(t, err)
		if v != "" {
			t.Errorf("unset setting = %q", v)
		}
		must(t, s.SetSetting(ctx, "max_token_ttl", "24h0m0s"))
		must(t, s.SetSetting(ctx, "max_token_ttl", "1h0m0s"))
		v, err = s.Setting(ctx, "max_token_ttl")
		must(t, err)
		if v != "1h0m0s" {
			t.Errorf("setting = %q, want the last value", v)
		}

		sc := sidecar("east")
		must(t, s.CreateSidecar(ctx, sc))
		started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		in1 := &gatehouse.SidecarInstance{SidecarID: sc.ID, InstanceID: "i-1", Hostname: "h1", Version: "1.0.0", StartedAt: started,
			Ports: []int{15432}, ConfigVersion: 3, LastSeen: started.Add(time.Minute)}
		must(t, s.UpsertInstance(ctx, in1))
		time.Sleep(2 * time.Millisecond)
		in2 := &gatehouse.SidecarInstance{SidecarID: sc.ID, InstanceID: "i-0", Hostname: "h2", Version: "1.0.0", StartedAt: started,
			Errors: []string{"listen :15432: address in use"}, LastSeen: started.Add(time.Minute)}
		must(t, s.UpsertInstance(ctx, in2))
		// A later report replaces the first one's state but keeps its place.
		in1.ConfigVersion, in1.Ports, in1.LastSeen = 4, []int{15432, 13306}, started.Add(2*time.Minute)
		must(t, s.UpsertInstance(ctx, in1))
		wantErr(t, s.UpsertInstance(ctx, &gatehouse.SidecarInstance{SidecarID: "nope", InstanceID: "i"}), gatehouse.ECodeInvalid, "sidecar_id")

		got, err := s.ListInstances(ctx, sc.ID)
		must(t, err)
		if diff := cmp.Diff([]gatehouse.SidecarInstance{*in1, *in2}, got); diff != "" {
			t.Errorf("ListInstances (-want +got):\n%s", diff)
		}
	})
}

func TestUseJTI(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, dsn string) {
		ctx := context.Background()
		exp := time.Now().Add(time.Minute)
		must(t, s.UseJTI(ctx, "a", exp))
		wantErr(t, s.UseJTI(ctx, "a", exp), gatehouse.ECodeConflict, "")
		must(t, s.UseJTI(ctx, "b", exp))

		// An expired entry is purged, so its ID may come round again.
		must(t, s.UseJTI(ctx, "old", time.Now().Add(-time.Second)))
		must(t, s.UseJTI(ctx, "c", exp))
		must(t, s.UseJTI(ctx, "old", exp))

		// Two stores on the same database (two control-plane replicas) racing on one jti: exactly
		// one wins.
		other, err := store.Open(ctx, dsn, nil)
		must(t, err)
		defer other.Close()
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[string]int{}
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func(st *store.Store) {
				defer wg.Done()
				err := st.UseJTI(ctx, "race", exp)
				code := "ok"
				if err != nil {
					code = gatehouse.ErrorCode(err)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}([]*store.Store{s, other}[i%2])
		}
		wg.Wait()
		if diff := cmp.Diff(map[string]int{"ok": 1, gatehouse.ECodeConflict: 7}, codes); diff != "" {
			t.Errorf("outcomes of 8 concurrent uses (-want +got):\n%s", diff)
		}
	})
}

// TestOpenMigrations opens the same database several times at once (replicas starting together)
// and again later: the schema is applied exactly once and data survives.
func TestOpenMigrations(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, dsn string) {
		ctx := context.Background()
		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")))
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				st, err := store.Open(ctx, dsn, nil)
				if err == nil {
					_, err = st.GetRepository(ctx, "sales")
					st.Close()
				}
				errs[i] = err
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			must(t, err)
		}
		if v := version(t, s); v != 1 {
			t.Errorf("config version %d after reopening, want 1", v)
		}
	})
}

func TestOpenFreshPostgresReplicas(t *testing.T) {
	// Replicas starting on an empty database race to create the schema; the advisory lock makes
	// one of them do it.
	ctx := context.Background()
	dsn := backends[1].dsn(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := store.Open(ctx, dsn, nil)
			if err == nil {
				st.Close()
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
}

// TestSchemaFromTheFuture refuses to run against a schema newer than the binary, rather than
// writing to tables it does not understand.
func TestSchemaFromTheFuture(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, dsn string) {
		ctx := context.Background()
		driver, conn := "sqlite", dsn
		if strings.HasPrefix(dsn, "postgres") {
			driver = "pgx"
		}
		db, err := sql.Open(driver, conn)
		must(t, err)
		defer db.Close()
		if _, err := db.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 'x')"); err != nil {
			t.Fatal(err)
		}
		_, err = store.Open(ctx, dsn, nil)
		if err == nil || !strings.Contains(err.Error(), "upgrade gatehouse") {
			t.Errorf("Open on a newer schema: got %v, want an error asking to upgrade", err)
		}
		if driver == "sqlite" {
			var mode string
			must(t, db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			if mode != "wal" {
				t.Errorf("journal_mode = %q, want wal", mode)
			}
		}
	})
}
