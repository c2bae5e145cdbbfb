package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/sidecar"
)

func TestSidecarSecretSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yamlFile := write("sidecar.yaml", `
control_plane: https://file.example.com
secret_cache_ttl: 2m
secret_grace_period: 30m
aws_profile: file-profile
aws_region: eu-west-1
rolesanywhere_trust_anchor_arn: arn:aws:rolesanywhere:us-east-2:111111111111:trust-anchor/a
rolesanywhere_profile_arn: arn:aws:rolesanywhere:us-east-2:111111111111:profile/p
rolesanywhere_role_arn: arn:aws:iam::111111111111:role/r
rolesanywhere_certificate: /etc/gatehouse/client.crt
rolesanywhere_private_key: pkcs11:token=gatehouse;object=client-key;type=private
rolesanywhere_pkcs11_library: /usr/lib/softhsm/libsofthsm2.so
rolesanywhere_session_duration: 2h
azure_authority_host: https://login.microsoftonline.us/
azure_disable_challenge_resource_verification: true
`)
	partialRA := write("partial.yaml", "rolesanywhere_role_arn: arn:aws:iam::111111111111:role/r\n")
	badKey := write("bad.yaml", "aws_profil: x\n")

	fileWant := sidecar.SecretsConfig{
		CacheTTL: 2 * time.Minute, GracePeriod: 30 * time.Minute,
		AWS: sidecar.AWSConfig{Profile: "file-profile", Region: "eu-west-1", RolesAnywhere: &aws.RolesAnywhere{
			TrustAnchorARN: "arn:aws:rolesanywhere:us-east-2:111111111111:trust-anchor/a", ProfileARN: "arn:aws:rolesanywhere:us-east-2:111111111111:profile/p",
			RoleARN: "arn:aws:iam::111111111111:role/r", Certificate: "/etc/gatehouse/client.crt",
			PrivateKey: "pkcs11:token=gatehouse;object=client-key;type=private", PKCS11Library: "/usr/lib/softhsm/libsofthsm2.so",
			PKCS11PIN: "1234", SessionDuration: 2 * time.Hour,
		}},
		Azure: sidecar.AzureConfig{AuthorityHost: "https://login.microsoftonline.us/", DisableChallengeResourceVerification: true},
	}
	overridden := fileWant
	overridden.AWS.Profile = "flag-profile"
	overridden.AWS.Region = "us-west-2"
	overridden.GracePeriod = -1
	overridden.Azure.DisableChallengeResourceVerification = false

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    sidecar.SecretsConfig
		wantErr string
	}{
		{"none", nil, nil, sidecar.SecretsConfig{}, ""},
		{"file, PIN from the environment", []string{"--config", yamlFile}, map[string]string{"GATEHOUSE_PKCS11_PIN": "1234"}, fileWant, ""},
		{"flag over environment over file", []string{"--config", yamlFile, "--aws-profile", "flag-profile", "--secret-grace-period", "0s",
			"--azure-disable-challenge-resource-verification=false"},
			map[string]string{"GATEHOUSE_PKCS11_PIN": "1234", "GATEHOUSE_AWS_PROFILE": "env-profile", "GATEHOUSE_AWS_REGION": "us-west-2"}, overridden, ""},
		{"environment", nil, map[string]string{"GATEHOUSE_AWS_ENDPOINT": "https://vpce.example.com", "GATEHOUSE_AZURE_KEY_VAULT_ENDPOINT": "https://kv.internal/",
			"GATEHOUSE_SECRET_FETCH_TIMEOUT": "10s"},
			sidecar.SecretsConfig{FetchTimeout: 10 * time.Second, AWS: sidecar.AWSConfig{Endpoint: "https://vpce.example.com"}, Azure: sidecar.AzureConfig{KeyVaultEndpoint: "https://kv.internal/"}}, ""},
		{"incomplete roles anywhere", []string{"--config", partialRA}, nil, sidecar.SecretsConfig{},
			"IAM Roles Anywhere also needs --rolesanywhere-certificate, --rolesanywhere-private-key, --rolesanywhere-profile-arn, --rolesanywhere-trust-anchor-arn"},
		{"bad duration", nil, map[string]string{"GATEHOUSE_SECRET_CACHE_TTL": "soon"}, sidecar.SecretsConfig{}, `--secret-cache-ttl must be a duration like 5m, not "soon"`},
		{"unknown key", []string{"--config", badKey}, nil, sidecar.SecretsConfig{}, `unknown key "aws_profil"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ok := resolveSidecarSettings(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if diff := cmp.Diff(tc.want, cfg.Secrets); diff != "" {
				t.Errorf("secret settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSidecarCheckSecretsUsage(t *testing.T) {
	h := newHarness(t)
	_, stderr, code := h.run("", "sidecar", "check-secrets", "--control-plane", "https://x.example.com")
	if code != ExitUsage || !strings.Contains(stderr, "check-secrets needs --private-key, --sidecar-id") {
		t.Errorf("partial settings: exit %d, %s", code, stderr)
	}
}
