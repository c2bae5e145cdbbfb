package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// OSSRDBMSScope is the scope of Entra tokens for Azure Database for PostgreSQL and MySQL.
const OSSRDBMSScope = "https://ossrdbms-aad.database.windows.net/.default"

// Config is what the sidecar passes to New. The zero value uses DefaultAzureCredential as the
// Azure SDK configures it from the environment.
type Config struct {
	// AuthorityHost overrides the Microsoft Entra authority host (a sovereign cloud, or an
	// emulator). Empty means AZURE_AUTHORITY_HOST, then the public cloud. When set, instance
	// discovery is skipped: the host is trusted as given.
	AuthorityHost string
	// TenantID is the default tenant for the Azure CLI and workload identity credentials.
	TenantID string
	// KeyVaultEndpoint, when set, receives the requests for every vault instead of the vault
	// URI in the reference (an emulator, or a private endpoint reached under another name).
	KeyVaultEndpoint string
	// DisableChallengeResourceVerification accepts a Key Vault bearer challenge whose resource
	// does not match the vault's host, as a vault reached by IP address or a non-Azure name needs.
	DisableChallengeResourceVerification bool
	// HTTPClient carries every request (token endpoints, managed identity, Key Vault); nil means
	// the SDK's default.
	HTTPClient *http.Client
	// Credential replaces DefaultAzureCredential; nil means the default chain.
	Credential azcore.TokenCredential
	Logger     *slog.Logger
}

// Client holds the Azure credential shared by the Key Vault and Entra sources.
type Client struct {
	cred   azcore.TokenCredential
	opts   azcore.ClientOptions
	cfg    Config
	logger *slog.Logger

	mu     sync.Mutex
	vaults map[string]*azsecrets.Client
}

// New builds the credential chain. It does not authenticate; a missing or unusable identity shows
// on the first fetch.
func New(c Config) (*Client, error) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var opts azcore.ClientOptions
	if c.HTTPClient != nil {
		opts.Transport = c.HTTPClient
	}
	if c.AuthorityHost != "" {
		cl := cloud.AzurePublic
		cl.ActiveDirectoryAuthorityHost = c.AuthorityHost
		opts.Cloud = cl
	}
	cred := c.Credential
	if cred == nil {
		dac, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            opts,
			TenantID:                 c.TenantID,
			DisableInstanceDiscovery: c.AuthorityHost != "",
		})
		if err != nil {
			return nil, fmt.Errorf("azure credential chain: %w", err)
		}
		cred = dac
	}
	return &Client{
		cred:   markedCredential{cred},
		opts:   opts,
		cfg:    c,
		logger: logger.With("component", "secret/azure"),
		vaults: map[string]*azsecrets.Client{},
	}, nil
}

// Check gets a token for scope (e.g. "https://vault.azure.net/.default"), for a health check.
func (c *Client) Check(ctx context.Context, scope string) error {
	_, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	return err
}

// CredentialError is returned when the sidecar could not get a token: no credential in the chain
// applies, or the one that does was refused.
type CredentialError struct{ Err error }

func (e *CredentialError) Error() string {
	return "no usable Azure credential (chain: environment client secret/certificate, workload identity, managed identity, Azure CLI): " + oneLine(e.Err.Error())
}

// oneLine folds the SDK's multi-line messages (request line, rulers, response body) into one line
// for logs and check-secrets output.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Trim(l, "-") == "" {
			continue
		}
		parts = append(parts, l)
	}
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}

func (e *CredentialError) Unwrap() error { return e.Err }

type markedCredential struct{ azcore.TokenCredential }

func (m markedCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	t, err := m.TokenCredential.GetToken(ctx, o)
	if err != nil {
		var ce *CredentialError
		if !errors.As(err, &ce) {
			err = &CredentialError{Err: err}
		}
	}
	return t, err
}

// KeyVault is the "azure-key-vault" source.
type KeyVault struct{ c *Client }

var _ secret.Source = KeyVault{}

// KeyVault returns the Key Vault source over c's credential.
func (c *Client) KeyVault() KeyVault { return KeyVault{c: c} }

func (c *Client) vault(uri string) (*azsecrets.Client, error) {
	if c.cfg.KeyVaultEndpoint != "" {
		uri = c.cfg.KeyVaultEndpoint
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.vaults[uri]; v != nil {
		return v, nil
	}
	v, err := azsecrets.NewClient(uri, c.cred, &azsecrets.ClientOptions{
		ClientOptions:                        c.opts,
		DisableChallengeResourceVerification: c.cfg.DisableChallengeResourceVerification,
	})
	if err != nil {
		return nil, err
	}
	c.vaults[uri] = v
	return v, nil
}

// APIError is a refusal from Key Vault: the HTTP status, the error code (SecretNotFound,
// Forbidden) and its inner code (ForbiddenByRbac, SecretDisabled).
type APIError struct {
	Status    int
	Code      string
	InnerCode string
	Message   string
	Hint      string
	Err       error
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d", e.Code, e.Status)
	if e.InnerCode != "" {
		s += ", " + e.InnerCode
	}
	s += ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

// HTTPStatusCode is the vault's HTTP status, which tells the resolver a server error (worth
// riding out on the last good value) from a refusal.
func (e *APIError) HTTPStatusCode() int { return e.Status }

// Fetch reads secret ref.SecretName (at ref.Version, latest when empty) from vault ref.VaultURI.
func (s KeyVault) Fetch(ctx context.Context, ref gatehouse.SecretRef, _ proxy.Target) (gatehouse.Credential, error) {
	if ref.Source != gatehouse.SourceAzureKeyVault {
		return gatehouse.Credential{}, fmt.Errorf("azure-key-vault source given a %s reference", ref.Source)
	}
	v, err := s.c.vault(ref.VaultURI)
	if err != nil {
		return gatehouse.Credential{}, fmt.Errorf("key vault client: %w", err)
	}
	resp, err := v.GetSecret(ctx, ref.SecretName, ref.Version, nil)
	if err != nil {
		return gatehouse.Credential{}, shorten(err)
	}
	if resp.Value == nil || *resp.Value == "" {
		return gatehouse.Credential{}, errors.New("the secret has no value")
	}
	return gatehouse.NewCredential(*resp.Value), nil
}

var keyVaultHints = map[string]string{
	"SecretNotFound":  "check the vault URI, the secret name and the version",
	"ForbiddenByRbac": `assign the role "Key Vault Secrets User" on the secret or the vault to the sidecar's identity`,
	"SecretDisabled":  "enable the secret version in the vault",
	"Unauthorized":    "the vault did not accept the sidecar's token; check the tenant",
}

// shorten turns SDK errors into *CredentialError or *APIError with the service's message, and
// leaves network errors as they are.
func shorten(err error) error {
	var ce *CredentialError
	if errors.As(err, &ce) {
		return ce
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	e := &APIError{Status: re.StatusCode, Code: re.ErrorCode, Err: err}
	if re.RawResponse != nil && re.RawResponse.Body != nil {
		var body struct {
			Error struct {
				Code       string `json:"code"`
				Message    string `json:"message"`
				InnerError struct {
					Code string `json:"code"`
				} `json:"innererror"`
			} `json:"error"`
		}
		if b, rerr := io.ReadAll(io.LimitReader(re.RawResponse.Body, 64<<10)); rerr == nil && json.Unmarshal(b, &body) == nil {
			e.InnerCode = body.Error.InnerError.Code
			e.Message, _, _ = strings.Cut(strings.TrimSpace(body.Error.Message), "\r\n")
			if e.Code == "" {
				e.Code = body.Error.Code
			}
		}
	}
	if e.Code == "" {
		e.Code = http.StatusText(e.Status)
	}
	e.Hint = keyVaultHints[e.InnerCode]
	if e.Hint == "" {
		e.Hint = keyVaultHints[e.Code]
	}
	return e
}

// Entra is the "azure-entra" source: the credential is a Microsoft Entra access token for Azure
// Database for PostgreSQL / MySQL, used as the password of a Microsoft Entra database user.
type Entra struct{ c *Client }

var _ secret.Source = Entra{}

// Entra returns the Entra token source over c's credential.
func (c *Client) Entra() Entra { return Entra{c: c} }

// Fetch returns a token for OSSRDBMSScope. The SDK caches the token and renews it before it
// expires.
func (s Entra) Fetch(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, error) {
	c, _, err := s.FetchWithExpiry(ctx, ref, t)
	return c, err
}

// FetchWithExpiry is Fetch, and says when the token expires.
func (s Entra) FetchWithExpiry(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, time.Time, error) {
	if ref.Source != gatehouse.SourceAzureEntra {
		return gatehouse.Credential{}, time.Time{}, fmt.Errorf("azure-entra source given a %s reference", ref.Source)
	}
	switch t.Repository.TLSMode {
	case gatehouse.TLSRequire, gatehouse.TLSVerifyCA, gatehouse.TLSVerifyFull:
	default:
		return gatehouse.Credential{}, time.Time{}, fmt.Errorf("Microsoft Entra authentication needs TLS: set repository %s's tls_mode to require, verify-ca or verify-full (it is %q)", t.Repository.Name, t.Repository.TLSMode)
	}
	tok, err := s.c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{OSSRDBMSScope}})
	if err != nil {
		return gatehouse.Credential{}, time.Time{}, shorten(err)
	}
	return gatehouse.NewCredential(tok.Token), tok.ExpiresOn, nil
}
