package e2e

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret/aws/awsemu"
	"github.com/gatehousedb/gatehouse/internal/secret/azure/azureemu"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// The secret values of this test: each is a PostgreSQL role's password (or a cloud credential),
// and none may show anywhere but on the wire from the sidecar to PostgreSQL.
const (
	pwEnv      = "E2e-env-Pw-7Q1x"
	pwFile     = "E2e-file-Pw-8R2y"
	pwSMPlain  = "E2e-smplain-Pw-9S3z"
	pwSMJSON   = "E2e-smjson-Pw-0T4a"
	pwSMNested = "E2e-smnested-Pw-1U5b"
	pwKV       = "E2e-kv-Pw-2V6c"
	pwDenied   = "E2e-denied-Pw-3W7d"

	awsKeyID     = "AKIAGATEHOUSEE2E0001"
	awsSecretKey = "e2eSecretAccessKey/K7MDENG/bPxRfiCYEXAMPLE"
	azureAppID   = "0b3f6a57-1b1e-4c39-9d2e-5d3c4a2b1a00"
	azureSecret  = "e2e~AppSecret.Value_0123456789abcdef"
	azureMI      = "5e2c1a0f-aaaa-4bbb-8ccc-000000000001"
	azureMIHdr   = "e2e-identity-header-9f8e7d"
	pkcs11PIN    = "468135"

	arnPlain   = "arn:aws:secretsmanager:us-east-2:111111111111:secret:e2e-plain-KkAAcC"
	arnJSON    = "arn:aws:secretsmanager:us-east-2:111111111111:secret:e2e-json-AbCdEf"
	arnNested  = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:e2e-nested-ZyXwVu"
	arnDenied  = "arn:aws:secretsmanager:us-east-2:111111111111:secret:other-team-AsDfGh"
	arnMissing = "arn:aws:secretsmanager:us-east-2:111111111111:secret:e2e-nope-ZxCvBn"

	trustAnchorARN = "arn:aws:rolesanywhere:us-east-2:111111111111:trust-anchor/4b7a9f3c-2d1e-4c5b-9a8f-7e6d5c4b3a21"
	raProfileARN   = "arn:aws:rolesanywhere:us-east-2:111111111111:profile/9c8b7a6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
	softHSMLib     = "/usr/lib/softhsm/libsofthsm2.so"
)

var secretValues = []string{pwEnv, pwFile, pwSMPlain, pwSMJSON, pwSMNested, pwKV, pwDenied, awsSecretKey, azureSecret, pkcs11PIN}

// secretsFixture is one control plane, one PostgreSQL, the AWS and Azure emulators and a fake RDS
// upstream, shared by TestSecretSources's subtests.
type secretsFixture struct {
	cp       *ControlPlane
	admin    *CLI
	alice    *CLI
	id, priv string
	port     int // bound to repository "app" (the real PostgreSQL)
	iamPort  int // bound to repository "iam" (the fake RDS upstream)
	token    string
	dir      string
	aws      *awsemu.Server
	azure    *azureemu.Server
	iam      *iamUpstream
	awsDown  atomic.Bool // the AWS endpoint behind awsProxy refuses connections
	awsProxy string
	// everything a client, an admin or a log received, for the leak check
	mu       sync.Mutex
	seen     []string
	sidecars []*sidecarProc
	dataDirs []string
}

func (f *secretsFixture) record(s string) {
	f.mu.Lock()
	f.seen = append(f.seen, s)
	f.mu.Unlock()
}

// appUsers are the repository users of "app": username -> (secret flags, PostgreSQL password or ""
// when the role need not exist because the fetch must fail).
var appUsers = []struct {
	name, password string
	secret         []string
}{
	{"u_env", pwEnv, []string{"--secret-source", "env", "--env-name", "APP_ENV_PW"}},
	{"u_file", pwFile, nil}, // the path is only known at run time
	{"u_smplain", pwSMPlain, []string{"--secret-source", "aws-secrets-manager", "--arn", arnPlain}},
	{"u_smjson", pwSMJSON, []string{"--secret-source", "aws-secrets-manager", "--arn", arnJSON}},
	{"u_smnested", pwSMNested, []string{"--secret-source", "aws-secrets-manager", "--arn", arnNested, "--json-path", "nested.password"}},
	{"u_kv", pwKV, nil}, // the vault URI is only known at run time
	{"u_denied", "", []string{"--secret-source", "aws-secrets-manager", "--arn", arnDenied}},
	{"u_missing", "", []string{"--secret-source", "aws-secrets-manager", "--arn", arnMissing}},
	{"u_badpath", "", []string{"--secret-source", "aws-secrets-manager", "--arn", arnJSON, "--json-path", "nested.nope"}},
}

func newSecretsFixture(t *testing.T) *secretsFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &secretsFixture{dir: t.TempDir()}

	// Cloud emulators: one IAM user with long-term keys, an instance role, a Roles Anywhere role.
	f.aws = awsemu.New()
	f.aws.Start()
	t.Cleanup(f.aws.Close)
	user := f.aws.AddUser("gatehouse-sidecar", awsKeyID, awsSecretKey)
	for _, p := range []string{user, awsemu.RoleARN("baskinc-role"), awsemu.RoleARN("GatehouseSecretsAccess")} {
		for _, a := range []string{arnPlain, arnJSON, arnNested, arnMissing} {
			f.aws.Allow(p, a)
		}
	}
	f.aws.PutSecretString(arnPlain, pwSMPlain)
	f.aws.PutSecretString(arnJSON, `{"username":"u_smjson","password":"`+pwSMJSON+`","port":5432}`)
	f.aws.PutSecretString(arnNested, `{"nested":{"password":"`+pwSMNested+`"},"engine":"postgres"}`)
	f.aws.PutSecretString(arnDenied, pwDenied)
	target, _ := url.Parse(f.aws.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	down := &f.awsDown
	proxySrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() { // as if nothing listened: drop the connection
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	})}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go proxySrv.Serve(pl)
	t.Cleanup(func() { proxySrv.Close() })
	f.awsProxy = "http://" + pl.Addr().String()

	f.azure = azureemu.New()
	f.azure.Start()
	t.Cleanup(f.azure.Close)
	f.azure.AddApp(azureAppID, azureSecret)
	f.azure.EnableManagedIdentity(azureMIHdr, azureMI)
	f.azure.Grant(azureAppID, "u-kv")
	f.azure.Grant(azureMI, "u-kv")
	f.azure.SetSecret("u-kv", pwKV)
	writeSecretFile(t, filepath.Join(f.dir, "azure-ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.azure.Certificate().Raw})), 0o644)

	pg, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	f.iam = startIAMUpstream(t, f.aws, "us-east-2")

	f.cp = StartControlPlane(t, ServerOptions{})
	f.admin = f.cp.Admin(t)
	var pub string
	f.priv, pub = GenerateRSAKey(t, 2048)
	f.id = registerSidecar(t, f.admin, pub)
	f.port, f.iamPort = freeTCPPort(t), freeTCPPort(t)
	f.admin.MustRun("repository", "create", "--name", "app", "--type", "postgresql", "--version", "15",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(pg.Port()), "--database", "postgres", "--tls-mode", "disable")
	f.admin.MustRun("repository", "create", "--name", "iam", "--type", "postgresql", "--version", "15",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(f.iam.port), "--database", "postgres", "--tls-mode", "require")
	pwPath := filepath.Join(f.dir, "u_file.pw")
	writeSecretFile(t, pwPath, pwFile+"\n", 0o400)
	var names []string
	for _, u := range appUsers {
		args := append([]string{"repository", "user", "create", "--repository", "app", "--username", u.name}, u.secret...)
		switch u.name {
		case "u_file":
			args = append(args, "--secret-source", "file", "--file-path", pwPath)
		case "u_kv":
			args = append(args, "--secret-source", "azure-key-vault", "--vault-uri", f.azure.VaultURI(), "--secret-name", "u-kv")
		}
		f.admin.MustRun(args...)
		if u.password != "" {
			if err := pg.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", u.name, u.password)); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, u.name)
	}
	f.admin.MustRun("repository", "user", "create", "--repository", "iam", "--username", "iam_user", "--secret-source", "aws-rds-iam", "--region", "us-east-2")
	for port, repo := range map[int]string{f.port: "app", f.iamPort: "iam"} {
		f.admin.MustRun("sidecar", "port", "create", f.id, "--port", strconv.Itoa(port), "--type", "postgresql", "--version", "15")
		f.admin.MustRun("sidecar", "binding", "create", f.id, "--port", strconv.Itoa(port), "--repository", repo)
	}
	f.admin.MustRunStdin("alice-Passw0rd!\n", "user", "create", "alice@example.com", "--role", "DATA_CONSUMER", "--password-stdin")
	f.admin.MustRun("policy", "impersonation", "create", "--name", "alice-app", "--repository", "app",
		"--rule", "users=alice@example.com;repository_users="+strings.Join(names, ","))
	f.admin.MustRun("policy", "impersonation", "create", "--name", "alice-iam", "--repository", "iam",
		"--rule", "users=alice@example.com;repository_users=iam_user")
	f.alice = f.cp.NewCLI(t)
	f.alice.Login("alice@example.com", "alice-Passw0rd!")
	var tok createdToken
	f.alice.MustRunJSON(&tok, "token", "create", "--ttl", "30m")
	f.token = tok.Token
	return f
}

func writeSecretFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// cloudEnv is an environment without any AWS or Azure identity or setting of the host: no keys,
// no shared files, no IMDS, one attempt per AWS call (so an unreachable endpoint fails fast).
func (f *secretsFixture) cloudEnv(t *testing.T, more ...string) []string {
	home := t.TempDir()
	env := []string{"HOME=" + home, "AWS_CONFIG_FILE=" + filepath.Join(home, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "aws-credentials"), "AWS_EC2_METADATA_DISABLED=true",
		"AWS_MAX_ATTEMPTS=1", "AWS_REGION=us-east-2", "SSL_CERT_FILE=" + filepath.Join(f.dir, "azure-ca.pem"),
		"AZURE_TOKEN_CREDENTIALS=prod"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "AZURE_") || strings.HasPrefix(k, "IDENTITY_") || k == "MSI_ENDPOINT" {
			env = append(env, k+"=") // the SDKs treat empty as unset
		}
	}
	return append(env, more...)
}

// sidecar starts `gatehouse sidecar` with env and args, waits until both ports listen, and stops
// it when the subtest ends.
func (f *secretsFixture) sidecar(t *testing.T, env []string, args ...string) *sidecarProc {
	t.Helper()
	dataDir := t.TempDir()
	f.mu.Lock()
	f.dataDirs = append(f.dataDirs, dataDir)
	f.mu.Unlock()
	// Upstream pooling is off: these tests are about the credential each new upstream connection
	// fetches, and pooling would hand later sessions a warm connection without a fetch (pooling
	// itself is tested in internal/proxy/postgres). The fake RDS upstream is not a full PostgreSQL
	// either: it cannot answer a pooled checkout's SET application_name.
	args = append([]string{"--data-dir", dataDir, "--aws-endpoint", f.aws.URL(), "--azure-authority-host", f.azure.AuthorityHost(),
		"--azure-disable-challenge-resource-verification", "--upstream-pool-idle", "0"}, args...)
	p := startSidecar(t, f.cp.URL, f.id, f.priv, env, args...)
	f.mu.Lock()
	f.sidecars = append(f.sidecars, p)
	f.mu.Unlock()
	waitUntil(t, 15*time.Second, "sidecar listener ports open", func() bool {
		return listening("127.0.0.1", f.port) && listening("127.0.0.1", f.iamPort)
	})
	t.Cleanup(func() { p.stop(t) })
	return p
}

// query connects through the sidecar as user with pgx over TLS and runs one statement.
func (f *secretsFixture) query(user string, port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/postgres?sslmode=require&connect_timeout=15&default_query_exec_mode=simple_protocol",
		user, f.token, port))
	if err != nil {
		f.record(err.Error())
		return err
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user::text").Scan(&who); err != nil {
		f.record(err.Error())
		return err
	}
	if port == f.port && who != user {
		return fmt.Errorf("current_user = %q, want %q", who, user)
	}
	return nil
}

func (f *secretsFixture) mustQuery(t *testing.T, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := f.query(u, f.port); err != nil {
			t.Errorf("session as %s: %v", u, err)
		}
	}
}

// refused requires the session as user to fail with 08001 naming the repository user, and the
// instance report to show the reason.
func (f *secretsFixture) refused(t *testing.T, user string, reasons ...string) {
	t.Helper()
	err := f.query(user, f.port)
	if err == nil {
		t.Errorf("session as %s succeeded; want 08001", user)
		return
	}
	if !strings.Contains(err.Error(), "08001") || !strings.Contains(err.Error(), "credential of repository user "+user) {
		t.Errorf("session as %s: %v; want SQLSTATE 08001 naming the repository user", user, err)
	}
	f.reported(t, append([]string{user + "@app"}, reasons...)...)
}

// reported waits until an instance of the sidecar reports an error containing every want.
func (f *secretsFixture) reported(t *testing.T, wants ...string) {
	t.Helper()
	var last []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		res := f.admin.WithT(t).Run("sidecar", "instances", f.id, "--output", "json")
		f.record(res.Stdout)
		var list []gatehouse.SidecarInstance
		json.Unmarshal([]byte(res.Stdout), &list)
		last = nil
		for _, in := range list {
			if in.Status != "healthy" {
				continue
			}
			for _, e := range in.Errors {
				last = append(last, e)
				if secretsContainAll(e, wants...) {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("no instance reports an error with %q; errors: %q", wants, last)
}

func secretsContainAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func TestSecretSources(t *testing.T) {
	t.Parallel()
	f := newSecretsFixture(t)
	staticKeys := []string{"AWS_ACCESS_KEY_ID=" + awsKeyID, "AWS_SECRET_ACCESS_KEY=" + awsSecretKey}

	t.Run("env and file without any cloud configuration", func(t *testing.T) {
		f.sidecar(t, f.cloudEnv(t, "APP_ENV_PW="+pwEnv))
		f.mustQuery(t, "u_env", "u_file")
	})

	t.Run("secrets manager with static keys", func(t *testing.T) {
		f.sidecar(t, f.cloudEnv(t, staticKeys...))
		f.mustQuery(t, "u_smplain", "u_smjson", "u_smnested")
		f.refused(t, "u_denied", "AccessDeniedException", arnDenied, "secretsmanager:GetSecretValue")
		f.refused(t, "u_missing", "ResourceNotFoundException", arnMissing)
		f.refused(t, "u_badpath", "JSON secret has no key nested", "keys there: password, port, username", arnJSON+"#nested.nope")
	})

	t.Run("rds iam token", func(t *testing.T) {
		f.sidecar(t, f.cloudEnv(t, staticKeys...))
		before := f.iam.verified.Load()
		if err := f.query("iam_user", f.iamPort); err != nil {
			t.Fatalf("session as iam_user: %v (upstream: %v)", err, f.iam.lastErr())
		}
		if f.iam.verified.Load() != before+1 {
			t.Errorf("the upstream verified %d tokens; want 1 more (upstream: %v)", f.iam.verified.Load()-before, f.iam.lastErr())
		}
	})

	t.Run("check-secrets", func(t *testing.T) {
		c := &CLI{t: t, ConfigDir: t.TempDir(), Env: f.cloudEnv(t, append(staticKeys, "APP_ENV_PW="+pwEnv)...)}
		res := c.Run("sidecar", "check-secrets", "--control-plane", f.cp.URL, "--sidecar-id", f.id, "--private-key", f.priv,
			"--aws-endpoint", f.aws.URL(), "--azure-authority-host", f.azure.AuthorityHost(), "--azure-disable-challenge-resource-verification")
		f.record(res.Stdout + res.Stderr)
		if res.Code != 1 {
			t.Errorf("exit %d; want 1 (some fail)\n%s", res.Code, res)
		}
		want := map[string][]string{
			"u_env": {"OK"}, "u_file": {"OK"}, "u_smplain": {"OK"}, "u_smjson": {"OK"}, "u_smnested": {"OK"}, "iam_user": {"OK"},
			"u_denied":  {"access denied", "AccessDeniedException", arnDenied},
			"u_missing": {"secret not found", "ResourceNotFoundException", arnMissing},
			"u_badpath": {"JSON path missing", "nested.nope"},
			"u_kv":      {"no credentials found in the chain", "no usable Azure credential"},
		}
		for user, wants := range want {
			found := false
			for _, line := range strings.Split(res.Stdout, "\n") {
				if fs := strings.Fields(line); len(fs) > 2 && fs[1] == user {
					found = true
					if !secretsContainAll(line, wants...) {
						t.Errorf("check-secrets line for %s: %q; want %q", user, line, wants)
					}
				}
			}
			if !found {
				t.Errorf("check-secrets printed no line for %s:\n%s", user, res.Stdout)
			}
		}
		if !strings.Contains(res.Stderr, "4 of 10 credentials could not be fetched") {
			t.Errorf("stderr: %s", res.Stderr)
		}
	})

	t.Run("secrets manager with a profile file", func(t *testing.T) {
		home := t.TempDir()
		creds := writeSecretFile(t, filepath.Join(home, "credentials"), "[gatehouse]\naws_access_key_id="+awsKeyID+"\naws_secret_access_key="+awsSecretKey+"\n", 0o540)
		f.sidecar(t, f.cloudEnv(t, "AWS_SHARED_CREDENTIALS_FILE="+creds), "--aws-profile", "gatehouse")
		f.mustQuery(t, "u_smplain", "u_smnested")
	})

	t.Run("secrets manager with an EC2 instance profile over IMDSv2", func(t *testing.T) {
		imds := startMetadataMock(t, f.aws.IssueRoleCredentials(awsemu.RoleARN("baskinc-role"), 6*time.Hour))
		f.sidecar(t, f.cloudEnv(t, "AWS_EC2_METADATA_DISABLED=false", "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds))
		f.mustQuery(t, "u_smplain", "u_smjson")
	})

	ca := newTestCA(t)
	f.aws.AddTrustAnchor(trustAnchorARN, ca.cert)
	f.aws.AddProfile(raProfileARN, awsemu.RoleARN("GatehouseSecretsAccess"))
	raFlags := func(cert, key string) []string {
		return []string{"--rolesanywhere-trust-anchor-arn", trustAnchorARN, "--rolesanywhere-profile-arn", raProfileARN,
			"--rolesanywhere-role-arn", awsemu.RoleARN("GatehouseSecretsAccess"), "--rolesanywhere-certificate", cert, "--rolesanywhere-private-key", key}
	}

	t.Run("secrets manager with roles anywhere and PEM files", func(t *testing.T) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		cert, keyFile := ca.files(t, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		f.sidecar(t, f.cloudEnv(t), raFlags(cert, keyFile)...)
		f.mustQuery(t, "u_smplain", "u_smnested")
	})

	t.Run("secrets manager with roles anywhere and a SoftHSM2 key", func(t *testing.T) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		conf := softHSMToken(t, key, ca.issue(t, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)))
		f.sidecar(t, f.cloudEnv(t, "SOFTHSM2_CONF="+conf, "GATEHOUSE_PKCS11_PIN="+pkcs11PIN),
			append(raFlags("pkcs11:token=gatehouse;object=client-cert;type=cert", "pkcs11:token=gatehouse;object=client-key;type=private"),
				"--rolesanywhere-pkcs11-library", softHSMLib)...)
		f.mustQuery(t, "u_smjson")
	})

	t.Run("roles anywhere with an expired certificate", func(t *testing.T) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		cert, keyFile := ca.files(t, key, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
		f.sidecar(t, f.cloudEnv(t), raFlags(cert, keyFile)...)
		f.refused(t, "u_smplain", "no usable AWS credentials", "Untrusted certificate", "expired", arnPlain)
	})

	t.Run("key vault with a managed identity", func(t *testing.T) {
		f.sidecar(t, f.cloudEnv(t, "IDENTITY_ENDPOINT="+f.azure.IdentityEndpoint(), "IDENTITY_HEADER="+azureMIHdr))
		f.mustQuery(t, "u_kv")
	})

	t.Run("key vault with a client secret", func(t *testing.T) {
		f.sidecar(t, f.cloudEnv(t, "AZURE_TENANT_ID="+f.azure.TenantID, "AZURE_CLIENT_ID="+azureAppID, "AZURE_CLIENT_SECRET="+azureSecret))
		f.mustQuery(t, "u_kv")
	})

	t.Run("unreachable source", func(t *testing.T) {
		f.awsDown.Store(false)
		t.Cleanup(func() { f.awsDown.Store(false) })
		f.sidecar(t, f.cloudEnv(t, staticKeys...), "--aws-endpoint", f.awsProxy, "--secret-cache-ttl", "1s", "--secret-grace-period", "10m")
		f.mustQuery(t, "u_smplain")
		f.awsDown.Store(true)
		time.Sleep(1100 * time.Millisecond) // past the TTL
		// With a cached value: the session goes on with it, and the instance says why.
		f.mustQuery(t, "u_smplain")
		f.reported(t, "secret source aws-secrets-manager unreachable for "+arnPlain, "using the value fetched at")
		// Without one: refused, with the cause.
		f.refused(t, "u_smnested", arnNested)
	})

	t.Run("unreachable source without a grace period", func(t *testing.T) {
		f.awsDown.Store(false)
		t.Cleanup(func() { f.awsDown.Store(false) })
		f.sidecar(t, f.cloudEnv(t, staticKeys...), "--aws-endpoint", f.awsProxy, "--secret-cache-ttl", "1s", "--secret-grace-period", "0s")
		f.mustQuery(t, "u_smplain")
		f.awsDown.Store(true)
		time.Sleep(1100 * time.Millisecond)
		f.refused(t, "u_smplain", arnPlain)
	})

	// Nothing but the sidecar's connection to PostgreSQL ever held a value.
	f.checkNoLeaks(t)
}

// checkNoLeaks looks for every secret value in logs, API responses, files and what clients got.
func (f *secretsFixture) checkNoLeaks(t *testing.T) {
	t.Helper()
	places := map[string]string{"control plane output": f.cp.Output()}
	for i, p := range f.sidecars {
		places[fmt.Sprintf("sidecar %d output", i)] = p.out.String()
	}
	for i, s := range f.seen {
		places[fmt.Sprintf("client or CLI output %d", i)] = s
	}
	places["sidecar instances"] = f.admin.MustRun("sidecar", "instances", f.id, "--output", "json")
	places["repository users"] = f.admin.MustRun("repository", "user", "list", "--repository", "app", "--output", "json")
	key, err := syncapi.LoadPrivateKey(f.priv)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := syncapi.NewClient(f.cp.URL, &syncapi.Signer{Key: key, SidecarID: f.id, InstanceID: "leak-check", Audience: f.cp.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := sc.Config(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(snap)
	places["sidecar config snapshot"] = string(b)
	if len(snap.RepositoryUsers) != 10 {
		t.Errorf("snapshot has %d repository users; want 10", len(snap.RepositoryUsers))
	}
	for _, dir := range append([]string{f.cp.DataDir}, f.dataDirs...) {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, err := os.ReadFile(path); err == nil {
					places["file "+path] = string(b)
				}
			}
			return nil
		})
	}
	for where, text := range places {
		for _, v := range secretValues {
			if strings.Contains(text, v) {
				t.Errorf("secret value %q found in %s", v, where)
			}
		}
	}
}

// testCA is a Roles Anywhere trust anchor: X.509 v3, CA:TRUE, keyCertSign and cRLSign.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "GatehouseE2ECA", Organization: []string{"Gatehouse Test"}},
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key}
}

func (ca testCA) issue(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "gatehouse-sidecar", Organization: []string{"Gatehouse Test"}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// files writes a client certificate and its key as PEM files readable by the owner only.
func (ca testCA) files(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeSecretFile(t, filepath.Join(dir, "client.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.issue(t, key, notBefore, notAfter).Raw})), 0o400)
	keyFile = writeSecretFile(t, filepath.Join(dir, "client_private.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})), 0o400)
	return certFile, keyFile
}

// softHSMToken makes a SoftHSM2 token "gatehouse" holding key and cert, as docs/secret-sources.md
// does, and returns its SOFTHSM2_CONF.
func softHSMToken(t *testing.T, key crypto.Signer, cert *x509.Certificate) string {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := writeSecretFile(t, filepath.Join(dir, "softhsm2.conf"), "directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n", 0o600)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := writeSecretFile(t, filepath.Join(dir, "key.p8"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})), 0o600)
	certDER := writeSecretFile(t, filepath.Join(dir, "cert.der"), string(cert.Raw), 0o600)
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("softhsm2-util", "--init-token", "--free", "--label", "gatehouse", "--pin", pkcs11PIN, "--so-pin", "10293847")
	run("softhsm2-util", "--import", keyFile, "--token", "gatehouse", "--label", "client-key", "--id", "01", "--pin", pkcs11PIN)
	run("pkcs11-tool", "--module", softHSMLib, "--token-label", "gatehouse", "--login", "--pin", pkcs11PIN,
		"--write-object", certDER, "--type", "cert", "--id", "01", "--label", "client-cert")
	os.Remove(keyFile) // the key lives only in the token now
	return conf
}

// startMetadataMock runs AWS's EC2 metadata mock (a tool dependency in go.mod) in IMDSv2-only mode,
// serving c as the instance role's credentials, and returns its URL.
func startMetadataMock(t *testing.T, c awsemu.Credentials) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "tool", "-n", "ec2-metadata-mock").Output()
	if err != nil {
		t.Fatalf("go tool -n ec2-metadata-mock: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	cfg, _ := json.Marshal(map[string]any{"metadata": map[string]any{"values": map[string]any{
		"iam-security-credentials": map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": c.AccessKeyID, "SecretAccessKey": c.SecretAccessKey, "Token": c.SessionToken,
			"Expiration": c.Expires.UTC().Format(time.RFC3339),
		},
	}}})
	cfgFile := writeSecretFile(t, filepath.Join(dir, "aemm-config.json"), string(cfg), 0o600)
	port := freeTCPPort(t)
	cmd := exec.Command(bin, "--imdsv2", "--hostname", "127.0.0.1", "--port", strconv.Itoa(port), "--config-file", cfgFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitUntil(t, 20*time.Second, "the EC2 metadata mock listens", func() bool { return listening("127.0.0.1", port) })
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// iamUpstream is a PostgreSQL-protocol server standing in for an RDS instance with IAM
// authentication: over TLS it asks for a cleartext password and accepts it only if the AWS
// emulator verifies it as an RDS IAM token for this host:port, region and user (as RDS would with
// its own keys). It answers every simple query with one row.
type iamUpstream struct {
	port     int
	verified atomic.Int32
	mu       sync.Mutex
	err      error
}

func (u *iamUpstream) lastErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func startIAMUpstream(t *testing.T, emu *awsemu.Server, region string) *iamUpstream {
	t.Helper()
	tlsCfg, _, err := proxy.SelfSignedTLS([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &iamUpstream{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if err := u.serve(c, tlsCfg, emu, region); err != nil {
					u.mu.Lock()
					u.err = err
					u.mu.Unlock()
				}
			}()
		}
	}()
	return u
}

func (u *iamUpstream) serve(c net.Conn, tlsCfg *tls.Config, emu *awsemu.Server, region string) error {
	be := pgproto3.NewBackend(c, c)
	m, err := be.ReceiveStartupMessage()
	if err != nil {
		return err
	}
	if _, ok := m.(*pgproto3.SSLRequest); !ok {
		return errors.New("the sidecar did not ask for TLS")
	}
	if _, err := c.Write([]byte("S")); err != nil {
		return err
	}
	tc := tls.Server(c, tlsCfg)
	be = pgproto3.NewBackend(tc, tc)
	if m, err = be.ReceiveStartupMessage(); err != nil {
		return err
	}
	sm, ok := m.(*pgproto3.StartupMessage)
	if !ok {
		return fmt.Errorf("got %T, want a StartupMessage", m)
	}
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return err
	}
	pm, err := be.Receive()
	if err != nil {
		return err
	}
	pw, ok := pm.(*pgproto3.PasswordMessage)
	if !ok {
		return fmt.Errorf("got %T, want a PasswordMessage", pm)
	}
	if err := emu.VerifyRDSAuthToken(pw.Password, fmt.Sprintf("127.0.0.1:%d", u.port), region, sm.Parameters["user"]); err != nil {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28000", Message: "PAM authentication failed for user \"" + sm.Parameters["user"] + "\""})
		be.Flush()
		return fmt.Errorf("token refused: %w", err)
	}
	u.verified.Add(1)
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range map[string]string{"server_version": "15.0", "client_encoding": "UTF8", "standard_conforming_strings": "on",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "TimeZone": "UTC"} {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{0, 0, 0, 7}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	for {
		m, err := be.Receive()
		if err != nil {
			return nil // the session ended
		}
		switch m.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("current_user"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(sm.Parameters["user"])}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if err := be.Flush(); err != nil {
				return err
			}
		case *pgproto3.Terminate:
			return nil
		}
	}
}
