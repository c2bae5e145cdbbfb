package azure_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/azure"
	"github.com/gatehousedb/gatehouse/internal/secret/azure/azureemu"
)

const (
	appID       = "0b3f6a57-1b1e-4c39-9d2e-5d3c4a2b1a00"
	appSecret   = "app~Secret.Value_0123456789abcdefghij"
	systemMI    = "5e2c1a0f-aaaa-4bbb-8ccc-000000000001"
	userMI      = "5e2c1a0f-aaaa-4bbb-8ccc-000000000002"
	miHeader    = "identity-header-9f8e7d"
	prodValue   = "kv-Pr0d-Pa55word!"
	oldValue    = "kv-0ld-Pa55word!"
	otherValue  = "kv-0ther-Pa55word!"
	disabledVal = "kv-D1sabled-Pa55word!"
)

var allValues = []string{prodValue, oldValue, otherValue, disabledVal, appSecret}

// isolate clears every variable DefaultAzureCredential reads.
func isolate(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
		"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
		"AZURE_TOKEN_CREDENTIALS", "AZURE_ADDITIONALLY_ALLOWED_TENANTS", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
		"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("HOME", t.TempDir())
}

type vault struct {
	emu                         *azureemu.Server
	oldVersion, disabledVersion string
}

func startEmulator(t *testing.T) vault {
	t.Helper()
	emu := azureemu.New()
	emu.Start()
	t.Cleanup(emu.Close)
	emu.AddApp(appID, appSecret)
	emu.EnableManagedIdentity(miHeader, systemMI)
	emu.AddUserAssignedIdentity(userMI)
	for _, p := range []string{appID, systemMI, userMI} {
		emu.Grant(p, "prod-*")
		emu.Grant(p, "missing")
	}
	old := emu.SetSecret("prod-user-admin", oldValue)
	emu.SetSecret("prod-user-admin", prodValue)
	emu.SetSecret("other-team", otherValue)
	dis := emu.SetSecret("prod-disabled", disabledVal)
	emu.DisableSecret("prod-disabled")
	return vault{emu: emu, oldVersion: old, disabledVersion: dis}
}

func (v vault) config() azure.Config {
	return azure.Config{
		AuthorityHost:                        v.emu.AuthorityHost(),
		HTTPClient:                           v.emu.Client(),
		DisableChallengeResourceVerification: true,
	}
}

func kvRef(v vault, name, version string) gatehouse.SecretRef {
	return gatehouse.SecretRef{Source: gatehouse.SourceAzureKeyVault, VaultURI: v.emu.VaultURI(), SecretName: name, Version: version}
}

type fetchCase struct {
	name    string
	ref     gatehouse.SecretRef
	want    string
	wantErr string
}

func keyVaultCases(v vault) []fetchCase {
	return []fetchCase{
		{name: "latest", ref: kvRef(v, "prod-user-admin", ""), want: prodValue},
		{name: "version", ref: kvRef(v, "prod-user-admin", v.oldVersion), want: oldValue},
		{name: "not granted", ref: kvRef(v, "other-team", ""),
			wantErr: `Forbidden (HTTP 403, ForbiddenByRbac): Caller is not authorized to perform action on resource. (assign the role "Key Vault Secrets User" on the secret or the vault to the sidecar's identity)`},
		{name: "not found", ref: kvRef(v, "missing", ""), wantErr: "SecretNotFound (HTTP 404): A secret with (name/id) missing was not found in this key vault."},
		{name: "disabled", ref: kvRef(v, "prod-disabled", ""), wantErr: "Forbidden (HTTP 403, SecretDisabled)"},
	}
}

func runFetchCases(t *testing.T, c *azure.Client, cases []fetchCase) {
	t.Helper()
	var logs bytes.Buffer
	r, err := secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceAzureKeyVault: c.KeyVault()},
		TTL:     -1,
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.ref.Validate(); err != nil {
				t.Fatalf("test reference does not validate: %v", err)
			}
			tg := proxy.Target{
				Repository: gatehouse.Repository{Name: "sales", Hostname: "db.internal", Port: 5432},
				User:       gatehouse.RepositoryUser{Repository: "sales", Username: "app", Secret: tc.ref},
			}
			cred, err := r.Credential(context.Background(), tg)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				t.Logf("error: %v", err)
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "secret "+tc.ref.String()+": ") {
					t.Errorf("error %q does not name the reference", err)
				}
				assertNoValue(t, "error", err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cred.Reveal()); diff != "" {
				t.Errorf("credential (-want +got):\n%s", diff)
			}
		})
	}
	assertNoValue(t, "log", logs.String())
}

func assertNoValue(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range allValues {
		if strings.Contains(s, v) {
			t.Errorf("%s contains a secret value:\n%s", what, s)
		}
	}
}

func newClient(t *testing.T, cfg azure.Config) *azure.Client {
	t.Helper()
	c, err := azure.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKeyVaultClientSecret(t *testing.T) {
	isolate(t)
	v := startEmulator(t)
	t.Setenv("AZURE_TENANT_ID", v.emu.TenantID)
	t.Setenv("AZURE_CLIENT_ID", appID)
	t.Setenv("AZURE_CLIENT_SECRET", appSecret)
	runFetchCases(t, newClient(t, v.config()), keyVaultCases(v))
	if v.emu.Calls("token") == 0 {
		t.Error("the token endpoint was never called")
	}
}

func TestKeyVaultWrongClientSecret(t *testing.T) {
	isolate(t)
	v := startEmulator(t)
	t.Setenv("AZURE_TENANT_ID", v.emu.TenantID)
	t.Setenv("AZURE_CLIENT_ID", appID)
	t.Setenv("AZURE_CLIENT_SECRET", "not-the-secret")
	c := newClient(t, v.config())
	_, err := c.KeyVault().Fetch(context.Background(), kvRef(v, "prod-user-admin", ""), proxy.Target{})
	t.Logf("err: %v", err)
	var ce *azure.CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CredentialError", err)
	}
	if !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("err = %q, want the directory's reason", err)
	}
	assertNoValue(t, "error", err.Error())
}

func TestKeyVaultManagedIdentity(t *testing.T) {
	isolate(t)
	v := startEmulator(t)
	t.Setenv("IDENTITY_ENDPOINT", v.emu.IdentityEndpoint())
	t.Setenv("IDENTITY_HEADER", miHeader)
	t.Run("system-assigned", func(t *testing.T) {
		runFetchCases(t, newClient(t, v.config()), keyVaultCases(v))
	})
	t.Run("user-assigned", func(t *testing.T) {
		t.Setenv("AZURE_CLIENT_ID", userMI)
		runFetchCases(t, newClient(t, v.config()), keyVaultCases(v))
	})
	t.Run("unknown user-assigned", func(t *testing.T) {
		t.Setenv("AZURE_CLIENT_ID", "5e2c1a0f-aaaa-4bbb-8ccc-00000000dead")
		_, err := newClient(t, v.config()).KeyVault().Fetch(context.Background(), kvRef(v, "prod-user-admin", ""), proxy.Target{})
		t.Logf("err: %v", err)
		var ce *azure.CredentialError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want *CredentialError", err)
		}
	})
	if v.emu.Calls("msi") == 0 {
		t.Error("the managed identity endpoint was never called")
	}
}

func TestEntraToken(t *testing.T) {
	isolate(t)
	v := startEmulator(t)
	t.Setenv("AZURE_TENANT_ID", v.emu.TenantID)
	t.Setenv("AZURE_CLIENT_ID", appID)
	t.Setenv("AZURE_CLIENT_SECRET", appSecret)
	c := newClient(t, v.config())
	ref := gatehouse.SecretRef{Source: gatehouse.SourceAzureEntra}
	tg := proxy.Target{
		Repository: gatehouse.Repository{Name: "azpg", Hostname: "azpg.postgres.database.azure.com", Port: 5432, TLSMode: gatehouse.TLSVerifyFull},
		User:       gatehouse.RepositoryUser{Repository: "azpg", Username: "gatehouse-app", Secret: ref},
	}
	cred, exp, err := c.Entra().FetchWithExpiry(context.Background(), ref, tg)
	if err != nil {
		t.Fatal(err)
	}
	principal, err := v.emu.VerifyToken(cred.Reveal(), azureemu.OSSRDBMSResource)
	if err != nil {
		t.Fatalf("the token is not an ossrdbms token: %v", err)
	}
	if principal != appID {
		t.Errorf("token principal = %s, want %s", principal, appID)
	}
	if exp.IsZero() {
		t.Error("no expiry")
	}

	tg.Repository.TLSMode = gatehouse.TLSPrefer
	_, err = c.Entra().Fetch(context.Background(), ref, tg)
	if err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Errorf("Entra token with tls_mode prefer: err = %v, want a TLS error", err)
	}
}

func TestNoAzureCredential(t *testing.T) {
	isolate(t)
	t.Setenv("PATH", t.TempDir()) // no az / azd
	v := startEmulator(t)
	// Narrow the chain so the test does not wait for the VM metadata endpoint.
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	_, err := newClient(t, v.config()).KeyVault().Fetch(context.Background(), kvRef(v, "prod-user-admin", ""), proxy.Target{})
	t.Logf("err: %v", err)
	var ce *azure.CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CredentialError", err)
	}
	if !strings.Contains(err.Error(), "AZURE_TENANT_ID") {
		t.Errorf("err = %q, want it to name the missing variables", err)
	}
}

func TestKeyVaultUnreachable(t *testing.T) {
	isolate(t)
	v := startEmulator(t)
	t.Setenv("IDENTITY_ENDPOINT", v.emu.IdentityEndpoint())
	t.Setenv("IDENTITY_HEADER", miHeader)
	t.Setenv("AZURE_CLIENT_ID", "5e2c1a0f-aaaa-4bbb-8ccc-0000000000aa") // not cached by an earlier test
	v.emu.AddUserAssignedIdentity("5e2c1a0f-aaaa-4bbb-8ccc-0000000000aa")
	c := newClient(t, v.config())
	ref := kvRef(v, "prod-user-admin", "")
	v.emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.KeyVault().Fetch(ctx, ref, proxy.Target{})
	t.Logf("err: %v", err)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want the network error", err)
	}
}
