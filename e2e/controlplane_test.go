package e2e

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
)

// The reference guide's whole registration workflow, through the CLI, on both stores.
func TestRegistrationWorkflow(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testWorkflow(t, StartControlPlane(t, ServerOptions{}))
	})
	t.Run("postgres", func(t *testing.T) {
		testWorkflow(t, StartControlPlane(t, ServerOptions{Store: StartPostgres(t)}))
	})
}

func ignoreStamps() cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".CreatedAt", ".UpdatedAt":
			return true
		}
		return false
	}, cmp.Ignore())
}

func testWorkflow(t *testing.T, cp *ControlPlane) {
	admin := cp.Admin(t)

	// Repositories: the one the guide registers, plus two more so "exactly the right rows" means
	// something.
	admin.MustRun("repository", "create", "--name", "sales", "--type", "postgresql", "--version", "15",
		"--hostname", "db1.example.com", "--port", "5432", "--database", "postgres", "--tls-mode", "require")
	admin.MustRun("repository", "create", "inventory", "--type", "mysql", "--version", "8.0", "--hostname", "10.0.0.7")
	admin.MustRun("repository", "create", "hr", "--type", "postgresql", "--version", "15.4", "--hostname", "hr-db.internal.example.com")

	var sales gatehouse.Repository
	admin.MustRunJSON(&sales, "repository", "get", "sales")
	wantSales := gatehouse.Repository{Name: "sales", Type: gatehouse.PostgreSQL, Version: "15", Hostname: "db1.example.com",
		Port: 5432, Database: "postgres", TLSMode: gatehouse.TLSRequire}
	if diff := cmp.Diff(wantSales, sales, ignoreStamps()); diff != "" {
		t.Errorf("repository get sales (-want +got):\n%s", diff)
	}
	var repos []gatehouse.Repository
	admin.MustRunJSON(&repos, "repository", "list")
	if diff := cmp.Diff([]string{"hr", "inventory", "sales"}, names(repos, func(r gatehouse.Repository) string { return r.Name })); diff != "" {
		t.Errorf("repository list (-want +got):\n%s", diff)
	}
	if out := admin.MustRun("repository", "list"); !strings.Contains(out, "NAME") || !strings.Contains(out, "db1.example.com") {
		t.Errorf("repository list table:\n%s", out)
	}

	// Repository users with every secret source.
	arn := "arn:aws:secretsmanager:us-east-2:111111111111:secret:username-KkAAcC"
	admin.MustRun("repository", "user", "create", "--repository", "sales", "--username", "admin_user",
		"--secret-source", "aws-secrets-manager", "--arn", arn, "--json-path", "password")
	admin.MustRun("repository", "user", "create", "app_user", "--repository", "sales",
		"--secret-source", "azure-key-vault", "--vault-uri", "https://123sidecar456.vault.azure.net/", "--secret-name", "prod-user-admin")
	admin.MustRun("repository", "user", "create", "--repository", "sales", "--username", "report_user", "--secret-source", "env", "--env-name", "SALES_REPORT_PASSWORD")
	admin.MustRun("repository", "user", "create", "--repository", "sales", "--username", "etl_user", "--secret-source", "file", "--file-path", "/run/secrets/etl")
	admin.MustRun("repository", "user", "create", "--repository", "sales", "--username", "iam_user", "--secret-source", "aws-rds-iam", "--region", "us-east-2")
	admin.MustRun("repository", "user", "create", "--repository", "sales", "--username", "entra_user", "--secret-source", "azure-entra")
	admin.MustRun("repository", "user", "create", "--repository", "inventory", "--username", "reader", "--secret-source", "env", "--env-name", "INVENTORY_READER")
	admin.MustRun("repository", "user", "create", "--repository", "hr", "--username", "hr_admin", "--secret-source", "env", "--env-name", "HR_ADMIN")

	var users []gatehouse.RepositoryUser
	admin.MustRunJSON(&users, "repository", "user", "list", "--repository", "sales")
	wantUsers := []gatehouse.RepositoryUser{
		{Repository: "sales", Username: "admin_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceAWSSecretsManager, ARN: arn, JSONPath: "password"}},
		{Repository: "sales", Username: "app_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceAzureKeyVault, VaultURI: "https://123sidecar456.vault.azure.net/", SecretName: "prod-user-admin"}},
		{Repository: "sales", Username: "entra_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceAzureEntra}},
		{Repository: "sales", Username: "etl_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceFile, Path: "/run/secrets/etl"}},
		{Repository: "sales", Username: "iam_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceAWSRDSIAM, Region: "us-east-2"}},
		{Repository: "sales", Username: "report_user", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "SALES_REPORT_PASSWORD"}},
	}
	if diff := cmp.Diff(wantUsers, users, ignoreStamps()); diff != "" {
		t.Errorf("repository user list (-want +got):\n%s", diff)
	}
	// Update keeps the source and changes only the flag given.
	var upd gatehouse.RepositoryUser
	admin.MustRunJSON(&upd, "repository", "user", "update", "admin_user", "--repository", "sales", "--json-path", "nested.password")
	if want := (gatehouse.SecretRef{Source: gatehouse.SourceAWSSecretsManager, ARN: arn, JSONPath: "nested.password"}); upd.Secret != want {
		t.Errorf("repository user update: secret = %+v, want %+v", upd.Secret, want)
	}

	// Sidecar with an RSA key made as the guide makes it.
	_, pub := GenerateRSAKey(t, 2048)
	out := admin.MustRun("sidecar", "register", "--display-name", "east", "--hostname", "sidecar.example.com", "--public-key-file", pub)
	for _, want := range []string{"Sidecar ID:", "Control plane URL:", "gatehouse sidecar --control-plane "} {
		if !strings.Contains(out, want) {
			t.Errorf("sidecar register output lacks %q:\n%s", want, out)
		}
	}
	var sidecars []struct {
		gatehouse.Sidecar
		ControlPlaneURL string `json:"control_plane_url"`
	}
	admin.MustRunJSON(&sidecars, "sidecar", "list")
	if len(sidecars) != 1 || sidecars[0].ID == "" || sidecars[0].Hostname != "sidecar.example.com" || sidecars[0].AllowUnsupportedQueries {
		t.Fatalf("sidecar list: %+v", sidecars)
	}
	sc := sidecars[0].ID
	if !strings.Contains(out, "--sidecar-id "+sc) || !strings.Contains(out, sidecars[0].ControlPlaneURL) {
		t.Errorf("sidecar register output lacks the ID %s or URL %s:\n%s", sc, sidecars[0].ControlPlaneURL, out)
	}

	// Allow unsupported queries needs explicit confirmation; without a terminal, --yes.
	_, pub2 := GenerateRSAKey(t, 2048)
	admin.Fails(2, []string{"--yes"}, "sidecar", "register", "--display-name", "lab", "--hostname", "lab.example.com",
		"--public-key-file", pub2, "--allow-unsupported-queries")
	admin.MustRunJSON(&sidecars, "sidecar", "list")
	if len(sidecars) != 1 {
		t.Errorf("an unconfirmed registration registered a sidecar: %+v", sidecars)
	}
	var lab struct {
		gatehouse.Sidecar
		ControlPlaneURL string `json:"control_plane_url"`
	}
	admin.MustRunJSON(&lab, "sidecar", "register", "--display-name", "lab", "--hostname", "lab.example.com",
		"--public-key-file", pub2, "--allow-unsupported-queries", "--yes")
	if !lab.AllowUnsupportedQueries || lab.ID == "" || lab.ControlPlaneURL == "" {
		t.Errorf("sidecar register --allow-unsupported-queries --yes: %+v", lab)
	}
	admin.MustRun("sidecar", "delete", lab.ID)

	// Listener ports and bindings.
	admin.MustRun("sidecar", "port", "create", sc, "--port", "15432", "--type", "postgresql", "--version", "15")
	admin.MustRun("sidecar", "port", "create", sc, "--port", "13306", "--type", "mysql", "--version", "8.0")
	admin.MustRun("sidecar", "port", "create", sc, "--port", "15433", "--type", "postgresql", "--version", "15")
	var ports []gatehouse.ListenerPort
	admin.MustRunJSON(&ports, "sidecar", "port", "list", sc)
	if diff := cmp.Diff([]int{13306, 15432, 15433}, sorted(names(ports, func(p gatehouse.ListenerPort) int { return p.Port }))); diff != "" {
		t.Errorf("port list (-want +got):\n%s", diff)
	}
	admin.MustRun("sidecar", "binding", "create", sc, "--port", "15432", "--repository", "sales")
	admin.MustRun("sidecar", "binding", "create", sc, "--port", "13306", "--repository", "inventory")
	admin.MustRun("sidecar", "binding", "create", sc, "--port", "15433", "--repository", "hr")
	var bindings []gatehouse.Binding
	admin.MustRunJSON(&bindings, "sidecar", "binding", "list", sc)
	if diff := cmp.Diff([]string{"13306>inventory", "15432>sales", "15433>hr"},
		sorted(names(bindings, func(b gatehouse.Binding) string { return strconv.Itoa(b.Port) + ">" + b.Repository }))); diff != "" {
		t.Errorf("binding list (-want +got):\n%s", diff)
	}

	// People: a data consumer, a group she is in, and someone else.
	admin.MustRunStdin("alice-Passw0rd!\n", "user", "create", "alice@example.com", "--role", "DATA_CONSUMER", "--password-stdin")
	admin.MustRunStdin("bob-Passw0rd!\n", "user", "create", "bob@example.com", "--role", "DATA_CONSUMER", "--password-stdin")
	admin.MustRun("group", "create", "analysts", "--member", "alice@example.com")
	var alice gatehouse.User
	admin.MustRunJSON(&alice, "user", "get", "alice@example.com")
	if alice.Role != gatehouse.RoleDataConsumer || !alice.Active || !slices.Contains(alice.Groups, "analysts") {
		t.Errorf("user get alice: %+v", alice)
	}

	// Impersonation policies: one for a user, one for a group, one for somebody else.
	admin.MustRun("policy", "impersonation", "create", "--name", "alice-sales", "--repository", "sales",
		"--rule", "users=alice@example.com;repository_users=admin_user,report_user")
	admin.MustRun("policy", "impersonation", "create", "--name", "analysts-inventory", "--repository", "inventory",
		"--rule", "groups=analysts;repository_users=reader")
	admin.MustRun("policy", "impersonation", "create", "--name", "bob-hr", "--repository", "hr",
		"--rule", "users=bob@example.com;repository_users=hr_admin")
	var pol gatehouse.ImpersonationPolicy
	admin.MustRunJSON(&pol, "policy", "impersonation", "get", "alice-sales")
	wantPol := gatehouse.ImpersonationPolicy{Name: "alice-sales", Repository: "sales", Rules: []gatehouse.ImpersonationRule{
		{Users: []string{"alice@example.com"}, RepositoryUsers: []string{"admin_user", "report_user"}}}}
	if diff := cmp.Diff(wantPol, pol, ignoreStamps()); diff != "" {
		t.Errorf("policy get (-want +got):\n%s", diff)
	}

	// The data consumer signs in, makes a token and sees her connections.
	consumer := cp.NewCLI(t)
	consumer.Login("alice@example.com", "alice-Passw0rd!")
	if out := consumer.MustRun("whoami"); !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "DATA_CONSUMER") {
		t.Errorf("whoami:\n%s", out)
	}
	res := consumer.Run("token", "create", "--ttl", "1h", "--name", "laptop")
	if res.Code != 0 {
		t.Fatalf("%s", res)
	}
	secret := strings.TrimSpace(strings.SplitN(res.Stdout, "\n", 2)[0])
	if !gatehouse.LooksLikeToken(secret) {
		t.Errorf("token create printed %q first, not a token:\n%s", secret, res.Stdout)
	}
	if !strings.Contains(res.Stderr, "will not be shown again") {
		t.Errorf("token create gave no warning that the token is shown once:\n%s", res.Stderr)
	}
	var created struct {
		ID        string    `json:"id"`
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	consumer.MustRunJSON(&created, "token", "create", "--ttl", "30m")
	if !gatehouse.LooksLikeToken(created.Token) || created.ID == "" {
		t.Errorf("token create --output json: %+v", created)
	}
	if d := time.Until(created.ExpiresAt); d < 25*time.Minute || d > 35*time.Minute {
		t.Errorf("token expires in %v, want about 30m", d)
	}
	listOut := consumer.MustRun("token", "list")
	listJSON := consumer.MustRun("token", "list", "--output", "json")
	for _, s := range []string{secret, created.Token} {
		if strings.Contains(listOut, s) || strings.Contains(listJSON, s) || strings.Contains(cp.Output(), s) {
			t.Errorf("a token secret was shown again (token list or server output)")
		}
	}
	var tokens []gatehouse.AccessToken
	consumer.MustRunJSON(&tokens, "token", "list")
	if len(tokens) != 2 || tokens[0].Owner != "alice@example.com" {
		t.Errorf("token list: %+v", tokens)
	}

	var conns []gatehouse.Connection
	consumer.MustRunJSON(&conns, "connections")
	wantConns := []gatehouse.Connection{
		{Repository: "inventory", Type: gatehouse.MySQL, RepositoryUser: "reader", SidecarID: sc, SidecarHost: "sidecar.example.com", Port: 13306, Username: "reader"},
		{Repository: "sales", Type: gatehouse.PostgreSQL, Database: "postgres", RepositoryUser: "admin_user", SidecarID: sc, SidecarHost: "sidecar.example.com", Port: 15432, Username: "admin_user"},
		{Repository: "sales", Type: gatehouse.PostgreSQL, Database: "postgres", RepositoryUser: "report_user", SidecarID: sc, SidecarHost: "sidecar.example.com", Port: 15432, Username: "report_user"},
	}
	sortConns(conns)
	if diff := cmp.Diff(wantConns, conns); diff != "" {
		t.Errorf("connections (-want +got):\n%s", diff)
	}
	table := consumer.MustRun("connections")
	for _, want := range []string{"REPOSITORY", "REPOSITORY USER", "SIDECAR HOSTNAME", "PORT", "USERNAME", "sidecar.example.com", "15432", "report_user"} {
		if !strings.Contains(table, want) {
			t.Errorf("connections table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "hr_admin") {
		t.Errorf("alice sees bob's connection:\n%s", table)
	}

	// A data consumer is refused every admin command, clearly, and nothing changes.
	for _, args := range [][]string{
		{"repository", "list"},
		{"repository", "create", "--name", "evil", "--type", "postgresql", "--version", "15", "--hostname", "evil.example.com"},
		{"repository", "user", "list", "--repository", "sales"},
		{"sidecar", "list"},
		{"policy", "impersonation", "list"},
		{"user", "create", "mallory@example.com", "--role", "ADMIN"},
		{"group", "update", "analysts", "--add-member", "bob@example.com"},
		{"settings", "set", "max-token-ttl", "720h"},
	} {
		consumer.Fails(1, []string{"Error: ", "(forbidden)"}, args...)
	}
	admin.MustRunJSON(&repos, "repository", "list")
	if len(repos) != 3 {
		t.Errorf("a data consumer changed repositories: %+v", repos)
	}

	// Settings: the maximum token lifetime binds token creation.
	admin.MustRun("settings", "set", "max-token-ttl", "8h")
	got := strings.TrimSpace(admin.MustRun("settings", "get", "max-token-ttl"))
	if d, err := time.ParseDuration(got); err != nil || d != 8*time.Hour {
		t.Errorf("settings get max-token-ttl = %q, want 8h", got)
	}
	consumer.Fails(1, []string{"ttl", "(invalid)"}, "token", "create", "--ttl", "9h")

	// Revoking a token.
	consumer.MustRun("token", "revoke", created.ID)
	consumer.MustRunJSON(&tokens, "token", "list")
	for _, tk := range tokens {
		if tk.ID == created.ID && tk.RevokedAt == nil {
			t.Errorf("token %s not revoked: %+v", tk.ID, tk)
		}
	}

	// Deleting what others depend on is refused with the dependents named, unless --cascade.
	res = admin.Fails(1, []string{"(conflict)"}, "repository", "delete", "sales")
	if !strings.Contains(res.Stderr, "alice-sales") && !strings.Contains(res.Stderr, "15432") {
		t.Errorf("refused delete does not name the dependents: %s", res)
	}
	admin.MustRunJSON(&repos, "repository", "list")
	if len(repos) != 3 {
		t.Errorf("refused delete changed repositories: %+v", repos)
	}
	admin.MustRun("repository", "delete", "sales", "--cascade")
	consumer.MustRunJSON(&conns, "connections")
	if len(conns) != 1 || conns[0].Repository != "inventory" {
		t.Errorf("connections after deleting sales: %+v", conns)
	}
	admin.MustRunJSON(&bindings, "sidecar", "binding", "list", sc)
	if len(bindings) != 2 {
		t.Errorf("bindings after deleting sales: %+v", bindings)
	}

	// Logging out ends the session.
	consumer.MustRun("logout")
	consumer.Fails(1, []string{"not logged in"}, "connections")
}

func names[T, K any](xs []T, f func(T) K) []K {
	out := []K{}
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func sorted[T int | string](xs []T) []T {
	slices.Sort(xs)
	return xs
}

func sortConns(cs []gatehouse.Connection) {
	slices.SortFunc(cs, func(a, b gatehouse.Connection) int {
		return strings.Compare(a.Repository+"/"+a.RepositoryUser, b.Repository+"/"+b.RepositoryUser)
	})
}
