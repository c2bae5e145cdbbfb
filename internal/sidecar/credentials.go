package sidecar

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// credentialErrorTTL is how long a failed credential fetch stays in the instance's reported
// errors unless a later fetch for the same repository user succeeds.
const credentialErrorTTL = 5 * time.Minute

// credentialErrors wraps the engines' proxy.Credentials to remember recent fetch failures (a
// secret source the sidecar could not reach), so the instance reports them. The errors come from
// the resolver, which names references, never values.
type credentialErrors struct {
	next proxy.Credentials
	now  func() time.Time

	mu   sync.Mutex
	errs map[string]credentialError // repository/user -> last failure
}

type credentialError struct {
	msg string
	at  time.Time
}

var _ proxy.Credentials = (*credentialErrors)(nil)

func (c *credentialErrors) Credential(ctx context.Context, t proxy.Target) (gatehouse.Credential, error) {
	cred, err := c.next.Credential(ctx, t)
	key := t.User.Username + "@" + t.Repository.Name
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil:
		delete(c.errs, key)
	case ctx.Err() == nil: // the client going away is not the source's fault
		c.errs[key] = credentialError{msg: "credential for " + key + ": " + err.Error(), at: c.now()}
	}
	return cred, err
}

func (c *credentialErrors) Invalidate(t proxy.Target) { c.next.Invalidate(t) }

// close releases what the credentials hold open (a PKCS#11 session), when they hold anything.
func (c *credentialErrors) close() {
	if cl, ok := c.next.(interface{ Close() }); ok {
		cl.Close()
	}
}

// recent returns the failures of the last credentialErrorTTL, sorted, followed by the secret
// references whose source is unreachable while the last good value is still being used (which no
// session sees fail, so only the resolver's health shows them).
func (c *credentialErrors) recent() []string {
	c.mu.Lock()
	now := c.now()
	var out []string
	for k, e := range c.errs {
		if now.Sub(e.at) > credentialErrorTTL {
			delete(c.errs, k)
			continue
		}
		out = append(out, e.msg)
	}
	c.mu.Unlock()
	slices.Sort(out)
	if h, ok := c.next.(interface{ Health() []secret.Health }); ok {
		for _, s := range h.Health() {
			if now.Before(s.ServingUntil) {
				out = append(out, s.String())
			}
		}
	}
	return out
}
