package store_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/store"
)

func TestRepositories(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		sales := repo("sales", gatehouse.PostgreSQL, "15")
		must(t, s.CreateRepository(ctx, sales))
		if sales.CreatedAt.IsZero() || !sales.CreatedAt.Equal(sales.UpdatedAt) || sales.CreatedAt.Location() != time.UTC {
			t.Errorf("timestamps not set in UTC: %v %v", sales.CreatedAt, sales.UpdatedAt)
		}
		must(t, s.CreateRepository(ctx, repo("analytics", gatehouse.MySQL, "8.0")))

		got, err := s.GetRepository(ctx, "sales")
		must(t, err)
		if diff := cmp.Diff(sales, got); diff != "" {
			t.Errorf("GetRepository (-want +got):\n%s", diff)
		}

		tests := []struct {
			name        string
			call        func() error
			code, field string
		}{
			{"duplicate", func() error { return s.CreateRepository(ctx, repo("sales", gatehouse.MySQL, "8.0")) }, gatehouse.ECodeConflict, ""},
			{"invalid name", func() error { return s.CreateRepository(ctx, repo("Sales Team", gatehouse.MySQL, "8.0")) }, gatehouse.ECodeInvalid, "name"},
			{"get missing", func() error { _, err := s.GetRepository(ctx, "nope"); return err }, gatehouse.ECodeNotFound, ""},
			{"update missing", func() error { return s.UpdateRepository(ctx, repo("nope", gatehouse.MySQL, "8.0")) }, gatehouse.ECodeNotFound, ""},
			{"delete missing", func() error { return s.DeleteRepository(ctx, "nope", true) }, gatehouse.ECodeNotFound, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.call(), tt.code, tt.field) })
		}

		upd := *sales
		upd.Hostname, upd.Port, upd.TLSMode = "sales2.db.internal", 6432, gatehouse.TLSRequire
		upd.CreatedAt = time.Time{}
		must(t, s.UpdateRepository(ctx, &upd))
		if !upd.CreatedAt.Equal(sales.CreatedAt) || upd.UpdatedAt.Before(sales.UpdatedAt) {
			t.Errorf("after update created %v updated %v; created before %v", upd.CreatedAt, upd.UpdatedAt, sales.CreatedAt)
		}
		got, err = s.GetRepository(ctx, "sales")
		must(t, err)
		if diff := cmp.Diff(&upd, got); diff != "" {
			t.Errorf("after update (-want +got):\n%s", diff)
		}

		list, err := s.ListRepositories(ctx)
		must(t, err)
		var names []string
		for _, r := range list {
			names = append(names, r.Name)
		}
		if diff := cmp.Diff([]string{"analytics", "sales"}, names); diff != "" {
			t.Errorf("list order (-want +got):\n%s", diff)
		}

		must(t, s.DeleteRepository(ctx, "analytics", false))
		_, err = s.GetRepository(ctx, "analytics")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
	})
}

func TestRepositoryUsers(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")))
		alice := repoUser("sales", "alice")
		must(t, s.CreateRepositoryUser(ctx, alice))
		must(t, s.CreateRepositoryUser(ctx, &gatehouse.RepositoryUser{Repository: "sales", Username: "bob",
			Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "BOB_PASSWORD"}}))

		wantErr(t, s.CreateRepositoryUser(ctx, repoUser("nope", "alice")), gatehouse.ECodeInvalid, "repository")
		wantErr(t, s.CreateRepositoryUser(ctx, repoUser("sales", "alice")), gatehouse.ECodeConflict, "")
		wantErr(t, s.CreateRepositoryUser(ctx, &gatehouse.RepositoryUser{Repository: "sales", Username: "carol",
			Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv}}), gatehouse.ECodeInvalid, "secret.name")
		_, err := s.GetRepositoryUser(ctx, "sales", "zed")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		_, err = s.ListRepositoryUsers(ctx, "nope")
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		got, err := s.GetRepositoryUser(ctx, "sales", "alice")
		must(t, err)
		if diff := cmp.Diff(alice, got); diff != "" {
			t.Errorf("GetRepositoryUser (-want +got):\n%s", diff)
		}

		alice.Secret = gatehouse.SecretRef{Source: gatehouse.SourceAzureKeyVault, VaultURI: "https://v.vault.azure.net/", SecretName: "alice-pw"}
		must(t, s.UpdateRepositoryUser(ctx, alice))
		got, err = s.GetRepositoryUser(ctx, "sales", "alice")
		must(t, err)
		if diff := cmp.Diff(alice, got); diff != "" {
			t.Errorf("after update (-want +got):\n%s", diff)
		}
		wantErr(t, s.UpdateRepositoryUser(ctx, repoUser("sales", "zed")), gatehouse.ECodeNotFound, "")

		list, err := s.ListRepositoryUsers(ctx, "sales")
		must(t, err)
		var names []string
		for _, u := range list {
			names = append(names, u.Username)
		}
		if diff := cmp.Diff([]string{"alice", "bob"}, names); diff != "" {
			t.Errorf("list (-want +got):\n%s", diff)
		}

		must(t, s.DeleteRepositoryUser(ctx, "sales", "bob", false))
		wantErr(t, s.DeleteRepositoryUser(ctx, "sales", "bob", false), gatehouse.ECodeNotFound, "")
	})
}

var sidecarID = regexp.MustCompile(`^[a-z0-9]{20}$`)

func TestSidecarsPortsBindings(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		east := sidecar("east")
		must(t, s.CreateSidecar(ctx, east))
		if !sidecarID.MatchString(east.ID) {
			t.Errorf("sidecar ID %q is not 20 lowercase URL-safe characters", east.ID)
		}
		west := sidecar("west")
		must(t, s.CreateSidecar(ctx, west))
		if west.ID == east.ID {
			t.Fatal("two sidecars got the same ID")
		}
		got, err := s.GetSidecar(ctx, east.ID)
		must(t, err)
		if diff := cmp.Diff(east, got); diff != "" {
			t.Errorf("GetSidecar (-want +got):\n%s", diff)
		}
		east.AllowUnsupportedQueries = true
		east.SecondPublicKey = publicKey
		must(t, s.UpdateSidecar(ctx, east))
		got, err = s.GetSidecar(ctx, east.ID)
		must(t, err)
		if diff := cmp.Diff(east, got); diff != "" {
			t.Errorf("after UpdateSidecar (-want +got):\n%s", diff)
		}
		bad := sidecar("bad")
		bad.PublicKey = "not a key"
		wantErr(t, s.CreateSidecar(ctx, bad), gatehouse.ECodeInvalid, "public_key")
		_, err = s.GetSidecar(ctx, "nope")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		list, err := s.ListSidecars(ctx)
		must(t, err)
		if len(list) != 2 || list[0].DisplayName != "east" || list[1].DisplayName != "west" {
			t.Errorf("ListSidecars = %+v, want east, west", list)
		}

		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15.4")))
		must(t, s.CreateRepository(ctx, repo("crm", gatehouse.MySQL, "8.0")))
		pgPort := &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"}
		must(t, s.CreateListenerPort(ctx, pgPort))
		must(t, s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: east.ID, Port: 13306, Type: gatehouse.MySQL, Version: "8.4"}))
		gotPort, err := s.GetListenerPort(ctx, east.ID, 15432)
		must(t, err)
		if diff := cmp.Diff(pgPort, gotPort); diff != "" {
			t.Errorf("GetListenerPort (-want +got):\n%s", diff)
		}

		tests := []struct {
			name        string
			call        func() error
			code, field string
		}{
			{"port duplicate", func() error {
				return s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"})
			}, gatehouse.ECodeConflict, ""},
			{"port on missing sidecar", func() error {
				return s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: "nope", Port: 1, Type: gatehouse.PostgreSQL, Version: "15"})
			}, gatehouse.ECodeInvalid, "sidecar_id"},
			{"port missing", func() error { _, err := s.GetListenerPort(ctx, east.ID, 1); return err }, gatehouse.ECodeNotFound, ""},
			{"ports of missing sidecar", func() error { _, err := s.ListListenerPorts(ctx, "nope"); return err }, gatehouse.ECodeNotFound, ""},
			{"binding to missing port", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 1, Repository: "sales"})
			}, gatehouse.ECodeInvalid, "port"},
			{"binding on missing sidecar", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: "nope", Port: 15432, Repository: "sales"})
			}, gatehouse.ECodeInvalid, "sidecar_id"},
			{"binding to missing repository", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "nope"})
			}, gatehouse.ECodeInvalid, "repository"},
			{"binding across types", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "crm"})
			}, gatehouse.ECodeInvalid, "repository"},
			{"binding across mysql minor versions", func() error {
				return s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 13306, Repository: "crm"})
			}, gatehouse.ECodeInvalid, "repository"},
			{"delete missing binding", func() error { return s.DeleteBinding(ctx, east.ID, 15432, "crm") }, gatehouse.ECodeNotFound, ""},
			{"bindings of missing sidecar", func() error { _, err := s.ListBindings(ctx, "nope"); return err }, gatehouse.ECodeNotFound, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.call(), tt.code, tt.field) })
		}

		b := &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "sales"}
		must(t, s.CreateBinding(ctx, b))
		wantErr(t, s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "sales"}), gatehouse.ECodeConflict, "")
		bs, err := s.ListBindings(ctx, east.ID)
		must(t, err)
		if diff := cmp.Diff([]gatehouse.Binding{*b}, bs); diff != "" {
			t.Errorf("ListBindings (-want +got):\n%s", diff)
		}
		all, err := s.ListBindings(ctx, "")
		must(t, err)
		if len(all) != 1 {
			t.Errorf("ListBindings(\"\") = %v", all)
		}

		// Changes that would break the binding are refused; compatible ones are not.
		sales, err := s.GetRepository(ctx, "sales")
		must(t, err)
		sales.Version = "16"
		err = s.UpdateRepository(ctx, sales)
		wantErr(t, err, gatehouse.ECodeConflict, "")
		if want := `repository "sales" is bound to listener port east:15432, which would no longer fit: postgresql listener ports must present the repository's major version (port 15, repository 16); change or delete the bindings first`; err.Error() != want {
			t.Errorf("message:\n got %s\nwant %s", err, want)
		}
		sales.Version = "15.6"
		must(t, s.UpdateRepository(ctx, sales))
		wantErr(t, s.UpdateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.MySQL, Version: "8.0"}), gatehouse.ECodeConflict, "")
		upd := &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15.2"}
		must(t, s.UpdateListenerPort(ctx, upd))
		if !upd.CreatedAt.Equal(pgPort.CreatedAt) {
			t.Errorf("UpdateListenerPort CreatedAt = %v, want %v", upd.CreatedAt, pgPort.CreatedAt)
		}

		// Deletes blocked by dependents say which, and cascade removes them.
		err = s.DeleteListenerPort(ctx, east.ID, 15432, false)
		wantErr(t, err, gatehouse.ECodeConflict, "")
		if want := `listener port 15432 on sidecar "` + east.ID + `" has dependents: binding east:15432 -> repository "sales"; delete them first or use --cascade`; err.Error() != want {
			t.Errorf("message:\n got %s\nwant %s", err, want)
		}
		err = s.DeleteSidecar(ctx, east.ID, false)
		wantErr(t, err, gatehouse.ECodeConflict, "")
		if want := `sidecar "east" (` + east.ID + `) has dependents: listener port 13306, listener port 15432, binding east:15432 -> repository "sales"; delete them first or use --cascade`; err.Error() != want {
			t.Errorf("message:\n got %s\nwant %s", err, want)
		}
		must(t, s.DeleteListenerPort(ctx, east.ID, 15432, true))
		bs, err = s.ListBindings(ctx, "")
		must(t, err)
		if len(bs) != 0 {
			t.Errorf("bindings left after cascading port delete: %v", bs)
		}
		must(t, s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"}))
		must(t, s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "sales"}))
		must(t, s.UpsertInstance(ctx, &gatehouse.SidecarInstance{SidecarID: east.ID, InstanceID: "i-1"}))
		must(t, s.DeleteSidecar(ctx, east.ID, true))
		_, err = s.GetSidecar(ctx, east.ID)
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		bs, err = s.ListBindings(ctx, "")
		must(t, err)
		ins, err := s.ListInstances(ctx, east.ID)
		must(t, err)
		if len(bs) != 0 || len(ins) != 0 {
			t.Errorf("left after cascading sidecar delete: bindings %v, instances %v", bs, ins)
		}
		must(t, s.DeleteSidecar(ctx, west.ID, false))
		// The repository is untouched by all that.
		if _, err := s.GetRepository(ctx, "sales"); err != nil {
			t.Error(err)
		}
	})
}

func TestDeleteRepositoryDependents(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")))
		must(t, s.CreateRepositoryUser(ctx, repoUser("sales", "reader")))
		east := sidecar("east")
		must(t, s.CreateSidecar(ctx, east))
		must(t, s.CreateListenerPort(ctx, &gatehouse.ListenerPort{SidecarID: east.ID, Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"}))
		must(t, s.CreateBinding(ctx, &gatehouse.Binding{SidecarID: east.ID, Port: 15432, Repository: "sales"}))
		must(t, s.CreateImpersonationPolicy(ctx, policy("analysts", "sales", rule([]string{"analysts"}, "reader"))))

		before := version(t, s)
		err := s.DeleteRepository(ctx, "sales", false)
		wantErr(t, err, gatehouse.ECodeConflict, "")
		want := `repository "sales" has dependents: binding east:15432, impersonation policy "analysts"; delete them first or use --cascade`
		if err.Error() != want {
			t.Errorf("message:\n got %s\nwant %s", err, want)
		}
		if v := version(t, s); v != before {
			t.Errorf("refused delete changed the config version %d -> %d", before, v)
		}

		must(t, s.DeleteRepository(ctx, "sales", true))
		if v := version(t, s); v != before+1 {
			t.Errorf("cascading delete: config version %d -> %d, want one increment", before, v)
		}
		_, err = s.GetImpersonationPolicy(ctx, "analysts")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		_, err = s.GetRepositoryUser(ctx, "sales", "reader")
		wantErr(t, err, gatehouse.ECodeNotFound, "")
		bs, err := s.ListBindings(ctx, "")
		must(t, err)
		if len(bs) != 0 {
			t.Errorf("bindings left: %v", bs)
		}
		// The listener port belongs to the sidecar and stays.
		if _, err := s.GetListenerPort(ctx, east.ID, 15432); err != nil {
			t.Error(err)
		}
		// The name is free again, with no leftovers.
		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")))
		users, err := s.ListRepositoryUsers(ctx, "sales")
		must(t, err)
		if len(users) != 0 {
			t.Errorf("recreated repository has users %v", users)
		}
	})
}

func TestImpersonationPolicies(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		must(t, s.CreateRepository(ctx, repo("sales", gatehouse.PostgreSQL, "15")))
		must(t, s.CreateRepository(ctx, repo("crm", gatehouse.PostgreSQL, "15")))
		for _, u := range []string{"reader", "writer", "admin"} {
			must(t, s.CreateRepositoryUser(ctx, repoUser("sales", u)))
		}
		must(t, s.CreateRepositoryUser(ctx, repoUser("crm", "other")))

		tests := []struct {
			name        string
			p           *gatehouse.ImpersonationPolicy
			code, field string
		}{
			{"missing repository", policy("p", "nope", rule([]string{"g"}, "reader")), gatehouse.ECodeInvalid, "repository"},
			{"missing repository user", policy("p", "sales", rule([]string{"g"}, "reader"), rule([]string{"g"}, "writer", "ghost")), gatehouse.ECodeInvalid, "rules[1].repository_users"},
			{"user of another repository", policy("p", "sales", rule([]string{"g"}, "other")), gatehouse.ECodeInvalid, "rules[0].repository_users"},
			{"no rules", policy("p", "sales"), gatehouse.ECodeInvalid, "rules"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := version(t, s)
				wantErr(t, s.CreateImpersonationPolicy(ctx, tt.p), tt.code, tt.field)
				if v := version(t, s); v != before {
					t.Errorf("failed create bumped the config version")
				}
			})
		}

		analysts := policy("analysts", "sales",
			gatehouse.ImpersonationRule{Users: []string{"ann@example.com"}, Groups: []string{"analysts"}, RepositoryUsers: []string{"reader", "writer"}},
			rule([]string{"dba"}, "writer"),
			rule([]string{"ops"}, "admin"))
		analysts.DisplayName = "Analysts"
		must(t, s.CreateImpersonationPolicy(ctx, analysts))
		must(t, s.CreateImpersonationPolicy(ctx, policy("crm-all", "crm", rule([]string{"all"}, "other"))))
		must(t, s.CreateImpersonationPolicy(ctx, policy("admins", "sales", rule([]string{"admins"}, "admin"))))
		wantErr(t, s.CreateImpersonationPolicy(ctx, policy("analysts", "sales", rule([]string{"g"}, "reader"))), gatehouse.ECodeConflict, "")

		got, err := s.GetImpersonationPolicy(ctx, "analysts")
		must(t, err)
		if diff := cmp.Diff(analysts, got); diff != "" {
			t.Errorf("GetImpersonationPolicy (-want +got):\n%s", diff)
		}
		list, err := s.ListImpersonationPolicies(ctx, "sales")
		must(t, err)
		if len(list) != 2 || list[0].Name != "admins" || list[1].Name != "analysts" {
			t.Errorf("ListImpersonationPolicies(sales) = %+v", list)
		}
		list, err = s.ListImpersonationPolicies(ctx, "")
		must(t, err)
		if len(list) != 3 {
			t.Errorf("ListImpersonationPolicies(\"\") has %d policies, want 3", len(list))
		}
		_, err = s.ListImpersonationPolicies(ctx, "nope")
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		upd := policy("crm-all", "crm", rule([]string{"all", "more"}, "other"))
		must(t, s.UpdateImpersonationPolicy(ctx, upd))
		wantErr(t, s.UpdateImpersonationPolicy(ctx, policy("crm-all", "crm", rule([]string{"g"}, "ghost"))), gatehouse.ECodeInvalid, "rules[0].repository_users")
		wantErr(t, s.UpdateImpersonationPolicy(ctx, policy("nope", "crm", rule([]string{"g"}, "other"))), gatehouse.ECodeNotFound, "")
		got, err = s.GetImpersonationPolicy(ctx, "crm-all")
		must(t, err)
		if diff := cmp.Diff(upd, got); diff != "" {
			t.Errorf("after update (-want +got):\n%s", diff)
		}

		// Deleting a repository user named by rules: refused, listing the policies...
		err = s.DeleteRepositoryUser(ctx, "sales", "writer", false)
		wantErr(t, err, gatehouse.ECodeConflict, "")
		if want := `repository user "writer" on repository "sales" has dependents: impersonation policy "analysts"; delete them first or use --cascade`; err.Error() != want {
			t.Errorf("message:\n got %s\nwant %s", err, want)
		}
		// ...or, with cascade, removed from the rules; a rule left empty goes, and so does a
		// policy left with no rule.
		must(t, s.DeleteRepositoryUser(ctx, "sales", "writer", true))
		got, err = s.GetImpersonationPolicy(ctx, "analysts")
		must(t, err)
		wantRules := []gatehouse.ImpersonationRule{
			{Users: []string{"ann@example.com"}, Groups: []string{"analysts"}, RepositoryUsers: []string{"reader"}},
			rule([]string{"ops"}, "admin"),
		}
		if diff := cmp.Diff(wantRules, got.Rules); diff != "" {
			t.Errorf("rules after cascade (-want +got):\n%s", diff)
		}
		must(t, s.DeleteRepositoryUser(ctx, "sales", "admin", true))
		_, err = s.GetImpersonationPolicy(ctx, "admins")
		wantErr(t, err, gatehouse.ECodeNotFound, "")

		must(t, s.DeleteImpersonationPolicy(ctx, "analysts"))
		wantErr(t, s.DeleteImpersonationPolicy(ctx, "analysts"), gatehouse.ECodeNotFound, "")
	})
}
