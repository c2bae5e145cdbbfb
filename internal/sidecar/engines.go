package sidecar

import (
	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql"
	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
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
				Auditor:                 p.Auditor,
				Pool:                    postgres.PoolConfig{Idle: p.UpstreamPoolIdle},
				ParkAfter:               p.ParkIdleAfter,
				Quiet:                   p.Quiet,
			})
		},
		gatehouse.MySQL: func(p EngineParams) (proxy.Engine, error) {
			return mysql.New(mysql.Config{
				Port:                    p.Port.Port,
				Version:                 p.Port.Version,
				Authorizer:              p.Authorizer,
				Credentials:             p.Credentials,
				TLS:                     p.TLS,
				AllowPlaintextPasswords: p.AllowPlaintextPasswords,
				Logger:                  p.Logger,
				Auditor:                 p.Auditor,
				Quiet:                   p.Quiet,
			})
		},
	}
}
