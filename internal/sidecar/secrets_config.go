package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/aws"
	"github.com/gatehousedb/gatehouse/internal/secret/azure"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
	"github.com/gatehousedb/gatehouse/internal/secret/file"
)

// SecretsConfig says how the sidecar fetches repository users' credentials. The zero value uses
// the resolver's defaults and the AWS and Azure SDKs' default credential chains.
type SecretsConfig struct {
	// CacheTTL is how long a credential is reused; zero means secret.DefaultTTL (5 minutes).
	CacheTTL time.Duration
	// GracePeriod is how long past its TTL the last good credential is used while its source is
	// unreachable; zero means secret.DefaultGracePeriod (15 minutes), negative disables it.
	GracePeriod time.Duration
	// FetchTimeout bounds one fetch; zero means 30 seconds.
	FetchTimeout time.Duration
	AWS          AWSConfig
	Azure        AzureConfig
}

// AWSConfig is the AWS identity and endpoints of the aws-secrets-manager and aws-rds-iam sources.
type AWSConfig struct {
	Profile  string // --aws-profile; empty means AWS_PROFILE, then "default"
	Region   string // --aws-region; default region for aws-rds-iam and STS
	Endpoint string // --aws-endpoint; a VPC endpoint under another name, or an emulator
	// RolesAnywhere, when set, replaces the default credential chain with IAM Roles Anywhere.
	RolesAnywhere *aws.RolesAnywhere
}

// AzureConfig is the Azure identity and endpoints of the azure-key-vault and azure-entra sources.
type AzureConfig struct {
	AuthorityHost                        string // --azure-authority-host; empty means AZURE_AUTHORITY_HOST, then the public cloud
	TenantID                             string // --azure-tenant-id
	KeyVaultEndpoint                     string // --azure-key-vault-endpoint; send every vault's requests there
	DisableChallengeResourceVerification bool   // --azure-disable-challenge-resource-verification
}

// Credentials is the sidecar's credential resolver over every source this build has. The AWS and
// Azure clients are made on the first fetch that needs them, so a sidecar without any cloud-backed
// repository user starts without cloud credentials or configuration.
type Credentials struct {
	*secret.Resolver
	aws   *lazyClient[*aws.Client]
	azure *lazyClient[*azure.Client]
}

var _ proxy.Credentials = (*Credentials)(nil)

// NewCredentials returns the resolver described by cfg. Close it when done.
func NewCredentials(cfg SecretsConfig, logger *slog.Logger) (*Credentials, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Credentials{
		aws: &lazyClient[*aws.Client]{name: "AWS", make: func(ctx context.Context) (*aws.Client, error) {
			return aws.New(ctx, aws.Config{Profile: cfg.AWS.Profile, Region: cfg.AWS.Region, Endpoint: cfg.AWS.Endpoint,
				RolesAnywhere: cfg.AWS.RolesAnywhere, Logger: logger})
		}, close: (*aws.Client).Close},
		azure: &lazyClient[*azure.Client]{name: "Azure", make: func(context.Context) (*azure.Client, error) {
			return azure.New(azure.Config{AuthorityHost: cfg.Azure.AuthorityHost, TenantID: cfg.Azure.TenantID,
				KeyVaultEndpoint: cfg.Azure.KeyVaultEndpoint, DisableChallengeResourceVerification: cfg.Azure.DisableChallengeResourceVerification,
				Logger: logger})
		}},
	}
	r, err := secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{
			gatehouse.SourceEnv:               env.Source{},
			gatehouse.SourceFile:              file.Source{},
			gatehouse.SourceAWSSecretsManager: lazySource[*aws.Client]{c.aws, func(a *aws.Client) secret.Source { return a.SecretsManager() }},
			gatehouse.SourceAWSRDSIAM:         lazySource[*aws.Client]{c.aws, func(a *aws.Client) secret.Source { return a.RDSIAM() }},
			gatehouse.SourceAzureKeyVault:     lazySource[*azure.Client]{c.azure, func(a *azure.Client) secret.Source { return a.KeyVault() }},
			gatehouse.SourceAzureEntra:        lazySource[*azure.Client]{c.azure, func(a *azure.Client) secret.Source { return a.Entra() }},
		},
		TTL:          cfg.CacheTTL,
		GracePeriod:  cfg.GracePeriod,
		FetchTimeout: cfg.FetchTimeout,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}
	c.Resolver = r
	return c, nil
}

// DefaultCredentials returns a credential resolver over the secret sources this build has,
// configured by cfg.
func DefaultCredentials(cfg SecretsConfig, logger *slog.Logger) (proxy.Credentials, error) {
	return NewCredentials(cfg, logger)
}

// Close releases what the cloud clients hold open (a PKCS#11 session).
func (c *Credentials) Close() {
	c.aws.shutdown()
	c.azure.shutdown()
}

// lazyClient makes a cloud client on first use. A failure is returned to that fetch and retried
// on the next one: the configuration may be fixed (a file appears) without a restart.
type lazyClient[T any] struct {
	name  string
	make  func(context.Context) (T, error)
	close func(T)

	mu     sync.Mutex
	client T
	ok     bool
	closed bool
}

func (l *lazyClient[T]) get(ctx context.Context) (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var zero T
	if l.closed {
		return zero, errors.New("the sidecar is stopping")
	}
	if l.ok {
		return l.client, nil
	}
	c, err := l.make(ctx)
	if err != nil {
		return zero, fmt.Errorf("%s configuration: %w", l.name, err)
	}
	l.client, l.ok = c, true
	return c, nil
}

func (l *lazyClient[T]) shutdown() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok && l.close != nil {
		l.close(l.client)
	}
	l.ok, l.closed = false, true
}

// lazySource is a secret.Source over a lazily made client. It passes a source's expiry on.
type lazySource[T any] struct {
	client *lazyClient[T]
	source func(T) secret.Source
}

var _ secret.ExpiringSource = lazySource[*aws.Client]{}

func (s lazySource[T]) Fetch(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, error) {
	c, _, err := s.FetchWithExpiry(ctx, ref, t)
	return c, err
}

func (s lazySource[T]) FetchWithExpiry(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, time.Time, error) {
	c, err := s.client.get(ctx)
	if err != nil {
		return gatehouse.Credential{}, time.Time{}, err
	}
	src := s.source(c)
	if es, ok := src.(secret.ExpiringSource); ok {
		return es.FetchWithExpiry(ctx, ref, t)
	}
	cred, err := src.Fetch(ctx, ref, t)
	return cred, time.Time{}, err
}

// CredentialProblem names, for an operator, the kind of failure err is — "no credentials found in
// the chain", "access denied", "secret not found", "JSON path missing", "source unreachable" — or
// "error" when it is none of them. The error itself says the rest.
func CredentialProblem(err error) string {
	var (
		awsCreds   *aws.CredentialsError
		azureCreds *azure.CredentialError
		awsAPI     *aws.APIError
		azureAPI   *azure.APIError
		jsonPath   *aws.JSONPathError
	)
	switch {
	case errors.As(err, &jsonPath):
		return "JSON path missing"
	case errors.As(err, &awsCreds), errors.As(err, &azureCreds):
		// Also when the last provider tried (IMDS) could not be reached: off EC2 that is the
		// usual way of finding no credentials.
		return "no credentials found in the chain"
	case errors.As(err, &awsAPI):
		switch awsAPI.Code {
		case "AccessDeniedException", "AccessDenied", "DecryptionFailure":
			return "access denied"
		case "ResourceNotFoundException":
			return "secret not found"
		}
	case errors.As(err, &azureAPI):
		switch azureAPI.Status {
		case 401, 403:
			return "access denied"
		case 404:
			return "secret not found"
		}
	}
	switch {
	case secret.Transient(err):
		return "source unreachable"
	case errors.Is(err, secret.ErrNoSource):
		return "source not configured"
	}
	return "error"
}
