package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/controlplane"
)

func TestNativeClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		conn gatehouse.Connection
		want *clientCommand
	}{
		{"postgresql", gatehouse.Connection{Type: gatehouse.PostgreSQL, Port: 5433, Username: "analyst", Database: "sales"},
			&clientCommand{Program: "psql", Args: []string{"-h", "sc.example.com", "-p", "5433", "-U", "analyst", "-d", "sales"}, Env: []string{"PGSSLMODE=require"}, PasswordEnv: "PGPASSWORD"}},
		{"mysql", gatehouse.Connection{Type: gatehouse.MySQL, Port: 3307, Username: "analyst@sales"},
			&clientCommand{Program: "mysql", Args: []string{"-h", "sc.example.com", "-P", "3307", "-u", "analyst@sales"}, PasswordEnv: "MYSQL_PWD"}},
		{"sqlserver", gatehouse.Connection{Type: gatehouse.SQLServer, Port: 1433, Username: "sa", Database: "db"},
			&clientCommand{Program: "sqlcmd", Args: []string{"-S", "sc.example.com,1433", "-U", "sa", "-N", "-d", "db"}, PasswordEnv: "SQLCMDPASSWORD"}},
	} {
		got, err := nativeClient(tc.conn, "sc.example.com", "")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if _, err := nativeClient(gatehouse.Connection{Type: gatehouse.Oracle}, "h", ""); err == nil || !strings.Contains(err.Error(), "command line") {
		t.Errorf("oracle: %v", err)
	}
}

func TestPickConnection(t *testing.T) {
	conns := []gatehouse.Connection{
		{Repository: "sales", RepositoryUser: "reader", Port: 1},
		{Repository: "sales", RepositoryUser: "writer", Port: 1},
		{Repository: "hr", RepositoryUser: "reader", Port: 2},
	}
	for _, tc := range []struct {
		repo, user, wantUser, wantErr string
	}{
		{repo: "hr", wantUser: "reader"},
		{repo: "sales", user: "writer", wantUser: "writer"},
		{repo: "sales", wantErr: "pick one with --user"},
		{repo: "sales", user: "admin", wantErr: "you may as: reader, writer"},
		{repo: "ops", wantErr: "cannot connect"},
	} {
		got, err := pickConnection(conns, tc.repo, tc.user)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s/%s: %v, want %q", tc.repo, tc.user, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.RepositoryUser != tc.wantUser {
			t.Errorf("%s/%s: %+v %v", tc.repo, tc.user, got, err)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"psql": "psql", "-c": "-c", "SELECT 1": "'SELECT 1'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestOIDCFlags(t *testing.T) {
	env := func(kv map[string]string) *env {
		return &env{Options: Options{Getenv: func(k string) string { return kv[k] }}}
	}
	for _, tc := range []struct {
		name    string
		flags   oidcFlags
		env     map[string]string
		wantErr string
	}{
		{name: "off"},
		{name: "disable without sso", flags: oidcFlags{disableLocalLogin: true}, wantErr: "needs single sign-on"},
		{name: "env disable without sso", env: map[string]string{"GATEHOUSE_DISABLE_LOCAL_LOGIN": "true"}, wantErr: "needs single sign-on"},
		{name: "no client id", flags: oidcFlags{issuer: "https://idp"}, wantErr: "--oidc-client-id"},
		{name: "no groups", env: map[string]string{"GATEHOUSE_OIDC_ISSUER": "https://idp", "GATEHOUSE_OIDC_CLIENT_ID": "c"}, wantErr: "--oidc-admin-groups"},
		{name: "from env", env: map[string]string{"GATEHOUSE_OIDC_ISSUER": "https://idp", "GATEHOUSE_OIDC_CLIENT_ID": "c", "GATEHOUSE_OIDC_CONSUMER_GROUPS": "a, b"}},
	} {
		var c controlplane.Config
		err := applyOIDCFlags(env(tc.env), &tc.flags, &c)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.name == "from env" && (c.OIDC == nil || !cmp.Equal(c.OIDC.ConsumerGroups, []string{"a", "b"})) {
			t.Errorf("%s: %+v", tc.name, c.OIDC)
		}
	}
}
