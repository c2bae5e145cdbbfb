package sidecar

import (
	"log/slog"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
	"github.com/gatehousedb/gatehouse/internal/secret/file"
)

// DefaultEngines returns the engines this build has. A listener port of any other database type
// accepts connections and closes them.
func DefaultEngines() map[gatehouse.DatabaseType]EngineFactory {
	return map[gatehouse.DatabaseType]EngineFactory{
		gatehouse.PostgreSQL: func(p EngineParams) (proxy.Engine, error) {
			return postgres.New(postgres.Config{
				Port:                    p.Port.Port,
				Authorizer:              p.Authorizer,
				Credentials:             p.Credentials,
				TLS:                     p.TLS,
				AllowPlaintextPasswords: p.AllowPlaintextPasswords,
				Logger:                  p.Logger,
			})
		},
	}
}

// DefaultCredentials returns a credential resolver over the secret sources this build has.
func DefaultCredentials(logger *slog.Logger) (proxy.Credentials, error) {
	return secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{
			gatehouse.SourceEnv:  env.Source{},
			gatehouse.SourceFile: file.Source{},
		},
		Logger: logger,
	})
}
