package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// TokenLifetime is how long RDS accepts an IAM authentication token after it is built. A
// resolver must not cache one longer (its default TTL, 5 minutes, is well inside it).
const TokenLifetime = 15 * time.Minute

// RDSIAM is the "aws-rds-iam" source: the credential is an RDS IAM authentication token for the
// target's host, port and user, signed with the sidecar's AWS credentials. Building it is local
// (a presigned URL); RDS checks it when the session authenticates.
type RDSIAM struct {
	c   *Client
	now func() time.Time
}

var _ secret.Source = RDSIAM{}

// RDSIAM returns the RDS IAM source over c's credentials.
func (c *Client) RDSIAM() RDSIAM { return RDSIAM{c: c, now: time.Now} }

// Fetch builds a token for t.Repository's host:port and t.User's username, in ref.Region or the
// client's default region. It refuses a repository whose TLS mode could send the token in clear.
func (s RDSIAM) Fetch(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, error) {
	c, _, err := s.FetchWithExpiry(ctx, ref, t)
	return c, err
}

// FetchWithExpiry is Fetch, and says until when the token is accepted.
func (s RDSIAM) FetchWithExpiry(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, time.Time, error) {
	if ref.Source != gatehouse.SourceAWSRDSIAM {
		return gatehouse.Credential{}, time.Time{}, fmt.Errorf("aws-rds-iam source given a %s reference", ref.Source)
	}
	switch t.Repository.TLSMode {
	case gatehouse.TLSRequire, gatehouse.TLSVerifyCA, gatehouse.TLSVerifyFull:
	default:
		return gatehouse.Credential{}, time.Time{}, fmt.Errorf("RDS IAM authentication needs TLS: set repository %s's tls_mode to require, verify-ca or verify-full (it is %q)", t.Repository.Name, t.Repository.TLSMode)
	}
	if t.Repository.Hostname == "" || t.Repository.Port == 0 || t.User.Username == "" {
		return gatehouse.Credential{}, time.Time{}, errors.New("RDS IAM token needs the repository's hostname and port and the repository user's name")
	}
	region := ref.Region
	if region == "" {
		region = s.c.Region()
	}
	if region == "" {
		return gatehouse.Credential{}, time.Time{}, errors.New("no AWS region: set region on the reference, or AWS_REGION on the sidecar")
	}
	endpoint := net.JoinHostPort(t.Repository.Hostname, strconv.Itoa(t.Repository.Port))
	start := s.now()
	tok, err := auth.BuildAuthToken(ctx, endpoint, region, t.User.Username, s.c.cfg.Credentials)
	if err != nil {
		return gatehouse.Credential{}, time.Time{}, fmt.Errorf("build RDS IAM token for %s@%s: %w", t.User.Username, endpoint, shorten(err, nil))
	}
	return gatehouse.NewCredential(tok), start.Add(TokenLifetime), nil
}
