package gatehouse

import (
	"log/slog"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// SecretSource names where a repository user's credential lives.
type SecretSource string

// Secret sources.
const (
	SourceAWSSecretsManager SecretSource = "aws-secrets-manager"
	SourceAzureKeyVault     SecretSource = "azure-key-vault"
	SourceEnv               SecretSource = "env"
	SourceFile              SecretSource = "file"
	SourceAWSRDSIAM         SecretSource = "aws-rds-iam"
	SourceAzureEntra        SecretSource = "azure-entra"
)

// SecretSources lists every source.
var SecretSources = []SecretSource{SourceAWSSecretsManager, SourceAzureKeyVault, SourceEnv, SourceFile, SourceAWSRDSIAM, SourceAzureEntra}

// SecretRef tells a sidecar where to fetch a credential. It never holds the credential itself: the
// API decodes it strictly, so a "password" field pasted into a reference is refused.
type SecretRef struct {
	Source SecretSource `json:"source"`

	// aws-secrets-manager
	ARN          string `json:"arn,omitempty"`
	JSONPath     string `json:"json_path,omitempty"`     // dot notation into a JSON secret: "password", "nested.password"
	VersionStage string `json:"version_stage,omitempty"` // AWSCURRENT when empty

	// azure-key-vault
	VaultURI   string `json:"vault_uri,omitempty"`
	SecretName string `json:"secret_name,omitempty"`
	Version    string `json:"version,omitempty"`

	// env
	Name string `json:"name,omitempty"`

	// file
	Path string `json:"path,omitempty"`

	// aws-rds-iam (aws-secrets-manager takes its region from the ARN)
	Region string `json:"region,omitempty"`
}

var (
	secretsManagerARN = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:([a-z]{2}(-[a-z]+)+-\d):(\d{12}):secret:[A-Za-z0-9/_+=.@-]+$`)
	awsRegion         = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	envName           = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	keyVaultSecret    = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	keyVaultVersion   = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	jsonPath          = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// ARNRegion returns the region of a Secrets Manager ARN, or "" if the ARN has the wrong shape.
func ARNRegion(arn string) string {
	m := secretsManagerARN.FindStringSubmatch(arn)
	if m == nil {
		return ""
	}
	return m[1]
}

// String describes the reference for logs and errors; it never contains a credential.
func (r SecretRef) String() string {
	switch r.Source {
	case SourceAWSSecretsManager:
		if r.JSONPath != "" {
			return r.ARN + "#" + r.JSONPath
		}
		return r.ARN
	case SourceAzureKeyVault:
		s := strings.TrimSuffix(r.VaultURI, "/") + "/secrets/" + r.SecretName
		if r.Version != "" {
			s += "/" + r.Version
		}
		return s
	case SourceEnv:
		return "env:" + r.Name
	case SourceFile:
		return "file:" + r.Path
	case SourceAWSRDSIAM:
		return "aws-rds-iam:" + r.Region
	case SourceAzureEntra:
		return "azure-entra"
	}
	return string(r.Source)
}

// Validate checks the reference for its source, and that no field of another source is set.
func (r *SecretRef) Validate() error {
	set := map[string]bool{
		"arn": r.ARN != "", "json_path": r.JSONPath != "", "version_stage": r.VersionStage != "",
		"vault_uri": r.VaultURI != "", "secret_name": r.SecretName != "", "version": r.Version != "",
		"name": r.Name != "", "path": r.Path != "", "region": r.Region != "",
	}
	allowed := map[SecretSource][]string{
		SourceAWSSecretsManager: {"arn", "json_path", "version_stage"},
		SourceAzureKeyVault:     {"vault_uri", "secret_name", "version"},
		SourceEnv:               {"name"},
		SourceFile:              {"path"},
		SourceAWSRDSIAM:         {"region"},
		SourceAzureEntra:        {},
	}
	fields, ok := allowed[r.Source]
	if !ok {
		return Invalid("secret.source", "must be one of aws-secrets-manager, azure-key-vault, env, file, aws-rds-iam, azure-entra")
	}
	for _, f := range []string{"arn", "json_path", "version_stage", "vault_uri", "secret_name", "version", "name", "path", "region"} {
		if set[f] && !contains(fields, f) {
			return Invalid("secret."+f, "is not used by secret source %s", r.Source)
		}
	}
	switch r.Source {
	case SourceAWSSecretsManager:
		if r.ARN == "" {
			return Invalid("secret.arn", "is required for aws-secrets-manager")
		}
		if ARNRegion(r.ARN) == "" {
			return Invalid("secret.arn", "must be a Secrets Manager ARN like arn:aws:secretsmanager:us-east-2:111111111111:secret:name-AbCdEf")
		}
		if r.JSONPath != "" && !jsonPath.MatchString(r.JSONPath) {
			return Invalid("secret.json_path", "must be a dot-separated path of keys, like password or nested.password")
		}
		if len(r.VersionStage) > 256 {
			return Invalid("secret.version_stage", "must be at most 256 characters")
		}
	case SourceAzureKeyVault:
		u, err := url.Parse(r.VaultURI)
		if r.VaultURI == "" {
			return Invalid("secret.vault_uri", "is required for azure-key-vault")
		}
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return Invalid("secret.vault_uri", "must be the vault's https URI, like https://myvault.vault.azure.net/")
		}
		if r.SecretName == "" {
			return Invalid("secret.secret_name", "is required for azure-key-vault")
		}
		if !keyVaultSecret.MatchString(r.SecretName) {
			return Invalid("secret.secret_name", "must be 1 to 127 letters, digits or '-'")
		}
		if r.Version != "" && !keyVaultVersion.MatchString(r.Version) {
			return Invalid("secret.version", "must be a 32-character hexadecimal Key Vault secret version")
		}
	case SourceEnv:
		if r.Name == "" {
			return Invalid("secret.name", "is required for env: the environment variable that holds the password")
		}
		if !envName.MatchString(r.Name) {
			return Invalid("secret.name", "must be an environment variable name: letters, digits and _, not starting with a digit")
		}
	case SourceFile:
		if r.Path == "" {
			return Invalid("secret.path", "is required for file: the file that holds the password")
		}
		if !filepath.IsAbs(r.Path) {
			return Invalid("secret.path", "must be an absolute path on the sidecar's host")
		}
	case SourceAWSRDSIAM:
		if r.Region != "" && !awsRegion.MatchString(r.Region) {
			return Invalid("secret.region", "must be an AWS region like us-east-2")
		}
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// RepositoryUser is a database credential registered on a repository: the username and where the
// sidecar fetches its password or token.
type RepositoryUser struct {
	Repository string    `json:"repository"`
	Username   string    `json:"username"`
	Secret     SecretRef `json:"secret"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Validate checks the username and the secret reference.
func (u *RepositoryUser) Validate() error {
	if err := ValidateDBUsername("username", u.Username); err != nil {
		return err
	}
	return u.Secret.Validate()
}

// ValidateDBUsername checks a database user name: 1 to 128 printable characters without spaces, '@'
// (which separates user from repository on the wire), quotes or control characters.
func ValidateDBUsername(field, name string) error {
	if name == "" {
		return Invalid(field, "is required")
	}
	if len(name) > 128 {
		return Invalid(field, "must be at most 128 characters")
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f || c == '@' || c == '"' || c == '\'' || c == '\\' {
			return Invalid(field, "must not contain spaces, quotes, backslashes, '@' or control characters")
		}
	}
	return nil
}

// Credential is a database password or token fetched from a secret source. It redacts itself when
// printed or logged; call Reveal only where the value goes onto the wire to the database.
type Credential struct{ value string }

// NewCredential wraps a secret value.
func NewCredential(v string) Credential { return Credential{value: v} }

// Reveal returns the secret value.
func (c Credential) Reveal() string { return c.value }

// IsZero reports whether the credential is empty.
func (c Credential) IsZero() bool { return c.value == "" }

// String redacts.
func (c Credential) String() string { return "[REDACTED]" }

// GoString redacts.
func (c Credential) GoString() string { return "[REDACTED]" }

// MarshalJSON redacts, so a credential can never be serialised by accident.
func (c Credential) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// MarshalText redacts.
func (c Credential) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// LogValue redacts for log/slog.
func (c Credential) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }
