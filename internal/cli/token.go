package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := group("token", "Create, list and revoke your access tokens (the password for database connections)",
		tokenCreateCmd(e), tokenListCmd(e), tokenRevokeCmd(e))
	cmd.Aliases = []string{"tokens"}
	return cmd
}

func tokenCreateCmd(e *env) *cobra.Command {
	var ttl, name string
	cmd := &cobra.Command{
		Use:   "create --ttl DURATION [--name NAME]",
		Short: "Create an access token; it is shown once",
		Long: `Create an access token for yourself. Use it as the password in any SQL client that connects
through a sidecar. The token is printed once and cannot be shown again; the lifetime may not
exceed the maximum an admin set (gatehouse settings get).`,
		Example: `  gatehouse token create --ttl 1h --name laptop
  TOKEN=$(gatehouse token create --ttl 15m --output json | jq -r .token)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl == "" {
				return usageErrorf("--ttl is required, like 1h, 30m or 7d")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			body := map[string]string{"ttl": ttl}
			if name != "" {
				body["name"] = name
			}
			raw, err := c.post(cmd.Context(), path("tokens"), body)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				var t struct {
					ID        string    `json:"id"`
					Name      string    `json:"name"`
					Token     string    `json:"token"`
					ExpiresAt time.Time `json:"expires_at"`
				}
				if err := json.Unmarshal(raw, &t); err != nil {
					return fmt.Errorf("decode answer: %w", err)
				}
				fmt.Fprintf(e.Stdout, "%s\n\n", t.Token)
				fields(e.Stdout, "Token ID", t.ID, "Name", t.Name, "Expires", ts(t.ExpiresAt))
				fmt.Fprintln(e.Stderr, "\nThis token will not be shown again. Use it as the database password when you connect through a sidecar.")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&ttl, "ttl", "", "how long the token is valid, like 1h, 30m or 7d (required)")
	cmd.Flags().StringVar(&name, "name", "", "a name to recognise the token by")
	return cmd
}

func tokenListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List access tokens (yours; admins see everyone's)",
		Example: `  gatehouse token list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("tokens"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				toks, err := decodeList[gatehouse.AccessToken](raw)
				if err != nil {
					return err
				}
				now := time.Now()
				var rows [][]string
				for _, t := range toks {
					state := "active"
					switch {
					case t.RevokedAt != nil:
						state = "revoked"
					case !now.Before(t.ExpiresAt):
						state = "expired"
					}
					rows = append(rows, []string{t.ID, t.Name, t.Owner, ts(t.ExpiresAt), state})
				}
				return table(e.Stdout, []string{"ID", "NAME", "OWNER", "EXPIRES", "STATE"}, rows)
			})
		},
	}
}

func tokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an access token; sessions using it end",
		Example: `  gatehouse token revoke 01HZX3...`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("tokens", args[0]), false)
			if err != nil {
				return err
			}
			return e.done(raw, "Token %s revoked.", args[0])
		},
	}
}

func newConnectionsCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "connections",
		Short: "Show what to type into a SQL client for each repository you may connect to",
		Long: `List, for every repository you may impersonate into, the repository users you may connect as,
the sidecar host name and listener port to connect to, and the user name to type. Use an
access token (gatehouse token create) as the password.`,
		Example: `  gatehouse connections
  gatehouse connections --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("connections"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				cs, err := decodeList[gatehouse.Connection](raw)
				if err != nil {
					return err
				}
				if len(cs) == 0 {
					fmt.Fprintln(e.Stdout, "No connections: no impersonation policy lets you connect to a bound repository yet.")
					return nil
				}
				var rows [][]string
				for _, c := range cs {
					rows = append(rows, []string{c.Repository, string(c.Type), c.RepositoryUser, c.SidecarHost, itoa(c.Port), c.Username})
				}
				return table(e.Stdout, []string{"REPOSITORY", "TYPE", "REPOSITORY USER", "SIDECAR HOSTNAME", "PORT", "USERNAME"}, rows)
			})
		},
	}
}

func newSettingsCmd(e *env) *cobra.Command {
	get := &cobra.Command{
		Use:   "get [KEY]",
		Short: "Show settings",
		Example: `  gatehouse settings get
  gatehouse settings get max-token-ttl
  gatehouse settings get activity-retention`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("settings"))
			if err != nil {
				return err
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("decode answer: %w", err)
			}
			if len(args) == 1 {
				k := settingKey(args[0])
				v, ok := m[k]
				if !ok {
					return usageErrorf("unknown setting %q (known: %s)", args[0], strings.Join(settingNames(m), ", "))
				}
				if e.json() {
					return e.printJSON(mustJSON(map[string]any{k: v}))
				}
				_, err := fmt.Fprintln(e.Stdout, v)
				return err
			}
			return e.show(raw, func() error {
				var kv []string
				for _, k := range sortedKeys(m) {
					kv = append(kv, strings.ReplaceAll(k, "_", "-"), fmt.Sprint(m[k]))
				}
				return fields(e.Stdout, kv...)
			})
		},
	}
	set := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Change a setting",
		Long: `Change a setting. Settings:
  max-token-ttl        the longest lifetime of an access token, like 8h (1m to 365d)
  activity-retention   how long activity records are kept, like 30d or 720h (at least 1h; default 90d).
                       The control plane deletes older records at start and then hourly.`,
		Example: `  gatehouse settings set max-token-ttl 8h
  gatehouse settings set activity-retention 30d`,
		Args: exactArgs(2, "KEY", "VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			k := settingKey(args[0])
			raw, err := c.put(cmd.Context(), path("settings"), map[string]string{k: args[1]})
			if err != nil {
				return err
			}
			return e.done(raw, "Set %s to %s.", args[0], args[1])
		},
	}
	return group("settings", "Show and change control-plane settings", get, set)
}

func settingKey(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }

func settingNames(m map[string]any) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, strings.ReplaceAll(k, "_", "-"))
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
