package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/sidecar"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// sidecarSecretsFileConfig is the secret-source part of the sidecar's config file, inlined into
// sidecarFileConfig.
type sidecarSecretsFileConfig struct {
	SecretCacheTTL     string `yaml:"secret_cache_ttl"`
	SecretGracePeriod  string `yaml:"secret_grace_period"`
	SecretFetchTimeout string `yaml:"secret_fetch_timeout"`

	AWSProfile  string `yaml:"aws_profile"`
	AWSRegion   string `yaml:"aws_region"`
	AWSEndpoint string `yaml:"aws_endpoint"`

	RolesAnywhereTrustAnchorARN   string `yaml:"rolesanywhere_trust_anchor_arn"`
	RolesAnywhereProfileARN       string `yaml:"rolesanywhere_profile_arn"`
	RolesAnywhereRoleARN          string `yaml:"rolesanywhere_role_arn"`
	RolesAnywhereCertificate      string `yaml:"rolesanywhere_certificate"`
	RolesAnywhereCertificateChain string `yaml:"rolesanywhere_certificate_chain"`
	RolesAnywherePrivateKey       string `yaml:"rolesanywhere_private_key"`
	RolesAnywherePKCS11Library    string `yaml:"rolesanywhere_pkcs11_library"`
	RolesAnywhereRegion           string `yaml:"rolesanywhere_region"`
	RolesAnywhereEndpoint         string `yaml:"rolesanywhere_endpoint"`
	RolesAnywhereSessionDuration  string `yaml:"rolesanywhere_session_duration"`

	AzureAuthorityHost                        string `yaml:"azure_authority_host"`
	AzureTenantID                             string `yaml:"azure_tenant_id"`
	AzureKeyVaultEndpoint                     string `yaml:"azure_key_vault_endpoint"`
	AzureDisableChallengeResourceVerification *bool  `yaml:"azure_disable_challenge_resource_verification"`
}

// sidecarSecretsFileKeys lists the keys above, for the unknown-key error.
const sidecarSecretsFileKeys = "secret_cache_ttl, secret_grace_period, secret_fetch_timeout, aws_profile, aws_region, aws_endpoint, " +
	"rolesanywhere_trust_anchor_arn, rolesanywhere_profile_arn, rolesanywhere_role_arn, rolesanywhere_certificate, " +
	"rolesanywhere_certificate_chain, rolesanywhere_private_key, rolesanywhere_pkcs11_library, rolesanywhere_region, " +
	"rolesanywhere_endpoint, rolesanywhere_session_duration, azure_authority_host, azure_tenant_id, azure_key_vault_endpoint, " +
	"azure_disable_challenge_resource_verification"

// sidecarSecretsHelp is the secret-source part of `gatehouse sidecar --help`.
const sidecarSecretsHelp = `
Secret sources (see docs/secret-sources.md); each flag also reads GATEHOUSE_<FLAG> (upper case, '-'
as '_', e.g. GATEHOUSE_AWS_PROFILE) and the config file key <flag> ('-' as '_', e.g. aws_profile):

  --secret-cache-ttl DURATION        how long a credential is reused (default 5m)
  --secret-grace-period DURATION     how long past that the last good value is used while its
                                     source is unreachable (default 15m; 0s disables)
  --secret-fetch-timeout DURATION    bound on one fetch (default 30s)
  --aws-profile, --aws-region, --aws-endpoint
  --rolesanywhere-trust-anchor-arn, --rolesanywhere-profile-arn, --rolesanywhere-role-arn,
  --rolesanywhere-certificate, --rolesanywhere-certificate-chain, --rolesanywhere-private-key,
  --rolesanywhere-pkcs11-library, --rolesanywhere-region, --rolesanywhere-endpoint,
  --rolesanywhere-session-duration   (the PKCS#11 PIN only from GATEHOUSE_PKCS11_PIN)
  --azure-authority-host, --azure-tenant-id, --azure-key-vault-endpoint,
  --azure-disable-challenge-resource-verification
The AWS and Azure SDKs' own variables (AWS_PROFILE, AWS_MAX_ATTEMPTS, AZURE_CLIENT_ID, ...) apply too.`

type sidecarSecretsFlags struct {
	strs               map[string]*string
	durs               map[string]*time.Duration
	azDisableChallenge bool
}

// sidecarSecretStringFlags are the string settings: flag name -> help.
var sidecarSecretStringFlags = []struct{ name, help string }{
	{"aws-profile", "AWS shared config/credentials profile (default: AWS_PROFILE, then default)"},
	{"aws-region", "default AWS region, for aws-rds-iam references without one and STS (default: AWS_REGION)"},
	{"aws-endpoint", "send every AWS API call to this URL (a VPC endpoint under another name)"},
	{"rolesanywhere-trust-anchor-arn", "IAM Roles Anywhere trust anchor ARN (setting it replaces the AWS credential chain)"},
	{"rolesanywhere-profile-arn", "IAM Roles Anywhere profile ARN"},
	{"rolesanywhere-role-arn", "IAM role ARN to assume through Roles Anywhere"},
	{"rolesanywhere-certificate", "Roles Anywhere certificate: PEM file or PKCS#11 URI"},
	{"rolesanywhere-certificate-chain", "PEM file of intermediate CA certificates"},
	{"rolesanywhere-private-key", "Roles Anywhere private key: PEM file or PKCS#11 URI"},
	{"rolesanywhere-pkcs11-library", "PKCS#11 module (default p11-kit-proxy.so; SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"},
	{"rolesanywhere-region", "Roles Anywhere region (default: the trust anchor's)"},
	{"rolesanywhere-endpoint", "Roles Anywhere endpoint URL (default: the public one, or --aws-endpoint)"},
	{"azure-authority-host", "Microsoft Entra authority host (default: AZURE_AUTHORITY_HOST, then the public cloud)"},
	{"azure-tenant-id", "default Entra tenant for workload identity and the Azure CLI"},
	{"azure-key-vault-endpoint", "send every Key Vault request to this URL (a private endpoint under another name)"},
}

var sidecarSecretDurationFlags = []struct{ name, help string }{
	{"secret-cache-ttl", "how long a fetched credential is reused (default 5m)"},
	{"secret-grace-period", "how long past its TTL the last good credential is used while its source is unreachable (default 15m; 0s disables)"},
	{"secret-fetch-timeout", "bound on one credential fetch (default 30s)"},
	{"rolesanywhere-session-duration", "Roles Anywhere session length, 15m to 12h (default 1h)"},
}

func (f *sidecarSecretsFlags) add(fl *pflag.FlagSet) {
	f.strs = map[string]*string{}
	f.durs = map[string]*time.Duration{}
	for _, s := range sidecarSecretStringFlags {
		f.strs[s.name] = fl.String(s.name, "", s.help)
	}
	for _, d := range sidecarSecretDurationFlags {
		f.durs[d.name] = fl.Duration(d.name, 0, d.help)
	}
	fl.BoolVar(&f.azDisableChallenge, "azure-disable-challenge-resource-verification", false,
		"accept a Key Vault bearer challenge for another resource (a vault reached by IP address or private name)")
}

// envName is the GATEHOUSE_ variable of a flag.
func sidecarEnvName(flag string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// resolve merges flags, GATEHOUSE_* variables and the config file, in that order of precedence.
func (f *sidecarSecretsFlags) resolve(e *env, cmd *cobra.Command, file sidecarSecretsFileConfig) (sidecar.SecretsConfig, error) {
	str := func(name, fromFile string) string {
		if v := *f.strs[name]; v != "" {
			return v
		}
		if v := e.Getenv(sidecarEnvName(name)); v != "" {
			return v
		}
		return fromFile
	}
	dur := func(name, fromFile string) (time.Duration, bool, error) {
		if cmd.Flags().Changed(name) {
			return *f.durs[name], true, nil
		}
		v := e.Getenv(sidecarEnvName(name))
		if v == "" {
			v = fromFile
		}
		if v == "" {
			return 0, false, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, false, usageErrorf("--%s must be a duration like 5m, not %q", name, v)
		}
		return d, true, nil
	}
	var c sidecar.SecretsConfig
	var err error
	var set bool
	if c.CacheTTL, _, err = dur("secret-cache-ttl", file.SecretCacheTTL); err != nil {
		return c, err
	}
	if c.GracePeriod, set, err = dur("secret-grace-period", file.SecretGracePeriod); err != nil {
		return c, err
	}
	if set && c.GracePeriod == 0 {
		c.GracePeriod = -1 // 0s on the command line means none; the resolver's zero means the default
	}
	if c.FetchTimeout, _, err = dur("secret-fetch-timeout", file.SecretFetchTimeout); err != nil {
		return c, err
	}
	c.AWS = sidecar.AWSConfig{
		Profile:  str("aws-profile", file.AWSProfile),
		Region:   str("aws-region", file.AWSRegion),
		Endpoint: str("aws-endpoint", file.AWSEndpoint),
	}
	ra := aws.RolesAnywhere{
		TrustAnchorARN:   str("rolesanywhere-trust-anchor-arn", file.RolesAnywhereTrustAnchorARN),
		ProfileARN:       str("rolesanywhere-profile-arn", file.RolesAnywhereProfileARN),
		RoleARN:          str("rolesanywhere-role-arn", file.RolesAnywhereRoleARN),
		Certificate:      str("rolesanywhere-certificate", file.RolesAnywhereCertificate),
		CertificateChain: str("rolesanywhere-certificate-chain", file.RolesAnywhereCertificateChain),
		PrivateKey:       str("rolesanywhere-private-key", file.RolesAnywherePrivateKey),
		PKCS11Library:    str("rolesanywhere-pkcs11-library", file.RolesAnywherePKCS11Library),
		PKCS11PIN:        e.Getenv("GATEHOUSE_PKCS11_PIN"),
		Region:           str("rolesanywhere-region", file.RolesAnywhereRegion),
		Endpoint:         str("rolesanywhere-endpoint", file.RolesAnywhereEndpoint),
	}
	if ra.SessionDuration, _, err = dur("rolesanywhere-session-duration", file.RolesAnywhereSessionDuration); err != nil {
		return c, err
	}
	if ra != (aws.RolesAnywhere{PKCS11PIN: ra.PKCS11PIN}) {
		var missing []string
		for name, v := range map[string]string{"--rolesanywhere-trust-anchor-arn": ra.TrustAnchorARN, "--rolesanywhere-profile-arn": ra.ProfileARN,
			"--rolesanywhere-role-arn": ra.RoleARN, "--rolesanywhere-certificate": ra.Certificate, "--rolesanywhere-private-key": ra.PrivateKey} {
			if v == "" {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return c, usageErrorf("IAM Roles Anywhere also needs %s", strings.Join(missing, ", "))
		}
		c.AWS.RolesAnywhere = &ra
	}
	c.Azure = sidecar.AzureConfig{
		AuthorityHost:    str("azure-authority-host", file.AzureAuthorityHost),
		TenantID:         str("azure-tenant-id", file.AzureTenantID),
		KeyVaultEndpoint: str("azure-key-vault-endpoint", file.AzureKeyVaultEndpoint),
	}
	const disable = "azure-disable-challenge-resource-verification"
	switch {
	case cmd.Flags().Changed(disable):
		c.Azure.DisableChallengeResourceVerification = f.azDisableChallenge
	case e.Getenv(sidecarEnvName(disable)) != "":
		b, err := strconv.ParseBool(e.Getenv(sidecarEnvName(disable)))
		if err != nil {
			return c, usageErrorf("%s must be true or false", sidecarEnvName(disable))
		}
		c.Azure.DisableChallengeResourceVerification = b
	case file.AzureDisableChallengeResourceVerification != nil:
		c.Azure.DisableChallengeResourceVerification = *file.AzureDisableChallengeResourceVerification
	}
	return c, nil
}

// sidecarCheckSecretsCmd is `gatehouse sidecar check-secrets`.
func sidecarCheckSecretsCmd(e *env) *cobra.Command {
	var f sidecarRunFlags
	cmd := &cobra.Command{
		Use:   "check-secrets",
		Short: "Fetch every credential this sidecar needs and print, per repository user, OK or why not",
		Long: `Fetch this sidecar's configuration from the control plane once (as the sidecar itself, with the
same settings as gatehouse sidecar: flags, GATEHOUSE_* variables or the config file), then fetch the
credential of every repository user of every repository bound to one of its listener ports, from
this host and with this host's cloud identity. Prints per user OK, or the reason (no credentials
found in the chain, access denied, secret not found, JSON path missing, source unreachable) and the
source's error. Never prints a credential. Exits 1 if any fetch failed.`,
		Example: `  gatehouse sidecar check-secrets --config /etc/gatehouse/sidecar.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.resolve(e, cmd)
			if err != nil {
				return err
			}
			var missing []string
			for flag, v := range map[string]string{"--control-plane": cfg.ControlPlane, "--sidecar-id": cfg.SidecarID, "--private-key": cfg.PrivateKeyFile} {
				if v == "" {
					missing = append(missing, flag)
				}
			}
			if len(missing) > 0 {
				slices.Sort(missing)
				return usageErrorf("check-secrets needs %s (flags, GATEHOUSE_* variables or a config file)", strings.Join(missing, ", "))
			}
			return checkSecrets(cmd.Context(), e, cfg)
		},
	}
	f.add(cmd)
	return cmd
}

func checkSecrets(ctx context.Context, e *env, cfg sidecar.Config) error {
	key, err := syncapi.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return err
	}
	client, err := syncapi.NewClient(cfg.ControlPlane, &syncapi.Signer{
		Key: key, SidecarID: cfg.SidecarID, InstanceID: "check-secrets-" + rand.Text()[:8], Audience: cfg.ControlPlane,
	}, nil)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	snap, err := client.Config(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("fetch this sidecar's configuration: %w", err)
	}
	if snap == nil {
		return fmt.Errorf("fetch this sidecar's configuration: the control plane sent none")
	}
	creds, err := sidecar.NewCredentials(cfg.Secrets, cfg.Logger)
	if err != nil {
		return err
	}
	defer creds.Close()

	bound := map[string]bool{}
	for _, b := range snap.Bindings {
		bound[b.Repository] = true
	}
	repos := map[string]gatehouse.Repository{}
	for _, r := range snap.Repositories {
		repos[r.Name] = r
	}
	users := slices.Clone(snap.RepositoryUsers)
	slices.SortFunc(users, func(a, b gatehouse.RepositoryUser) int {
		return strings.Compare(a.Repository+"\x00"+a.Username, b.Repository+"\x00"+b.Username)
	})
	var rows [][]string
	failed := 0
	for _, u := range users {
		repo, ok := repos[u.Repository]
		if !ok || !bound[u.Repository] {
			continue
		}
		result := "OK"
		if _, err := creds.Fetch(ctx, proxy.Target{Repository: repo, User: u}); err != nil {
			failed++
			result = sidecar.CredentialProblem(err) + ": " + err.Error()
		}
		rows = append(rows, []string{u.Repository, u.Username, string(u.Secret.Source), result})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(e.Stdout, "No repository user is bound to this sidecar's listener ports: nothing to check.")
		return err
	}
	if err := table(e.Stdout, []string{"REPOSITORY", "USER", "SOURCE", "RESULT"}, rows); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d credentials could not be fetched", failed, len(rows))
	}
	return nil
}
