// Package env is the "env" secret source: the credential is the value of an environment variable
// on the sidecar's host. Errors name the variable, never its value.
package env

import (
	"context"
	"fmt"
	"os"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
)

// Source reads credentials from environment variables.
type Source struct {
	// Lookup finds a variable; nil means os.LookupEnv.
	Lookup func(name string) (string, bool)
}

var _ secret.Source = Source{}

// Fetch returns the value of the variable ref.Name.
func (s Source) Fetch(_ context.Context, ref gatehouse.SecretRef, _ proxy.Target) (gatehouse.Credential, error) {
	if ref.Source != gatehouse.SourceEnv {
		return gatehouse.Credential{}, fmt.Errorf("env source given a %s reference", ref.Source)
	}
	if ref.Name == "" {
		return gatehouse.Credential{}, fmt.Errorf("no environment variable named in the reference")
	}
	lookup := s.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(ref.Name)
	if !ok {
		return gatehouse.Credential{}, fmt.Errorf("environment variable %s is not set on the sidecar", ref.Name)
	}
	if v == "" {
		return gatehouse.Credential{}, fmt.Errorf("environment variable %s is empty", ref.Name)
	}
	return gatehouse.NewCredential(v), nil
}
