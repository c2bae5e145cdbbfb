package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
)

// Config is what the sidecar passes to New. The zero value uses the SDK's default credential
// chain, region and endpoints, as the AWS CLI would on the same host.
type Config struct {
	// Profile selects a profile of the shared credentials and config files (--aws-profile).
	// Empty means AWS_PROFILE, then "default". The files' locations follow
	// AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE.
	Profile string
	// Region is the region for RDS IAM references that name none. Empty means the SDK's
	// (AWS_REGION, the profile's region). Secrets Manager always uses the ARN's region.
	Region string
	// Endpoint overrides the endpoint of every AWS API called (Secrets Manager, STS, Roles
	// Anywhere when its own Endpoint is empty): a VPC interface endpoint or an emulator. Empty
	// means the SDK's, which honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>.
	Endpoint string
	// RolesAnywhere, when set, replaces the default chain with IAM Roles Anywhere.
	RolesAnywhere *RolesAnywhere
	// HTTPClient carries the SDK's requests; nil means the SDK's default client.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// ExpiryWindow is how long before temporary credentials expire they are refreshed.
const ExpiryWindow = 5 * time.Minute

// Client holds the resolved AWS configuration and credentials shared by the Secrets Manager and
// RDS IAM sources. Create one per sidecar with New and Close it when the sidecar stops.
type Client struct {
	cfg    awssdk.Config
	logger *slog.Logger
	closer func()

	mu      sync.Mutex
	clients map[string]*secretsmanager.Client // region -> client
}

// New resolves the AWS configuration: region, endpoints and the credential chain. It does not
// call AWS; a missing or unusable credential shows on the first fetch.
func New(ctx context.Context, c Config) (*Client, error) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "secret/aws")
	opts := []func(*config.LoadOptions) error{
		config.WithCredentialsCacheOptions(func(o *awssdk.CredentialsCacheOptions) { o.ExpiryWindow = ExpiryWindow }),
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(c.Endpoint))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	closer := func() {}
	if ra := c.RolesAnywhere; ra != nil {
		p, err := newRolesAnywhere(*ra, c.Endpoint)
		if err != nil {
			return nil, err
		}
		closer = p.close
		opts = append(opts, config.WithCredentialsProvider(awssdk.NewCredentialsCache(p, func(o *awssdk.CredentialsCacheOptions) {
			o.ExpiryWindow = ExpiryWindow
		})))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		closer()
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	// The wrapper marks credential failures; the cache outside it is what SDK clients keep (they
	// would wrap a non-cache provider in a cache of their own, without the expiry window).
	cfg.Credentials = awssdk.NewCredentialsCache(markedProvider{cfg.Credentials}, func(o *awssdk.CredentialsCacheOptions) {
		o.ExpiryWindow = ExpiryWindow
	})
	if c.RolesAnywhere == nil {
		warnLoosePermissions(logger)
	}
	return &Client{cfg: cfg, logger: logger, closer: closer, clients: map[string]*secretsmanager.Client{}}, nil
}

// Close releases what the credentials hold open (a PKCS#11 session).
func (c *Client) Close() { c.closer() }

// Region is the default region: Config.Region, else the SDK's.
func (c *Client) Region() string { return c.cfg.Region }

// Check retrieves credentials from the chain, for a health check or check-secrets.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.cfg.Credentials.Retrieve(ctx)
	return err
}

func (c *Client) secretsManager(region string) *secretsmanager.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	sm := c.clients[region]
	if sm == nil {
		sm = secretsmanager.NewFromConfig(c.cfg, func(o *secretsmanager.Options) { o.Region = region })
		c.clients[region] = sm
	}
	return sm
}

// CredentialsError is returned when no credentials could be had from the chain (or Roles
// Anywhere). The sidecar's identity, not the secret, is the problem.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string {
	return "no usable AWS credentials (chain: environment, shared profile, web identity, ECS, EC2 instance profile; or Roles Anywhere when configured): " + e.Err.Error()
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// markedProvider wraps credential errors in *CredentialsError, so that a fetch can tell "the
// sidecar has no identity" from "the service refused it".
type markedProvider struct{ awssdk.CredentialsProvider }

func (p markedProvider) Retrieve(ctx context.Context) (awssdk.Credentials, error) {
	cr, err := p.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		var ce *CredentialsError
		if !errors.As(err, &ce) {
			err = &CredentialsError{Err: err}
		}
	}
	return cr, err
}

// APIError is a refusal from an AWS API: its code (AccessDeniedException,
// ResourceNotFoundException, ...) and message, without the SDK's request details.
type APIError struct {
	Code    string
	Message string
	Hint    string
	Err     error
}

func (e *APIError) Error() string {
	s := e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

// shorten turns an SDK error into a *CredentialsError or *APIError when it is one; other errors
// (network) keep the SDK's text, which names the endpoint.
func shorten(err error, hints map[string]string) error {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return ce
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return &APIError{Code: ae.ErrorCode(), Message: ae.ErrorMessage(), Hint: hints[ae.ErrorCode()], Err: err}
	}
	return err
}

// warnLoosePermissions logs when the shared credentials file can be read by every user on the
// host: it holds long-term keys, and should be readable by the sidecar's user (and group) only.
func warnLoosePermissions(logger *slog.Logger) {
	path := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return
		}
		path = filepath.Join(home, ".aws", "credentials")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if fi.Mode().Perm()&0o007 != 0 {
		logger.Warn("the AWS shared credentials file is readable by other users; chmod 0640 (or 0540) it",
			"path", path, "mode", strings.TrimPrefix(fi.Mode().Perm().String(), "-"))
	}
}
