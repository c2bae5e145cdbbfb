package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newSCIMCmd(e *env) *cobra.Command {
	return group("scim", "Manage SCIM provisioning from your identity provider",
		group("token", "Create, list and revoke the bearer tokens SCIM provisioning authenticates with",
			scimTokenCreateCmd(e), scimTokenListCmd(e), scimTokenRevokeCmd(e)))
}

func scimTokenCreateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "create",
		Short: "Create a SCIM bearer token; it is shown once",
		Long: `Create a bearer token for your identity provider's SCIM provisioning (Okta, Entra ID...).
Give the IdP the token and the SCIM base URL {server}/scim/v2. Tokens stay valid until revoked: to
rotate, create a new one, update the IdP, then revoke the old one.`,
		Example: `  gatehouse scim token create
  gatehouse scim token create --output json | jq -r .token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("scim-tokens"), nil)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				var t struct {
					ID    string `json:"id"`
					Token string `json:"token"`
				}
				if err := json.Unmarshal(raw, &t); err != nil {
					return fmt.Errorf("decode answer: %w", err)
				}
				fmt.Fprintf(e.Stdout, "%s\n\n", t.Token)
				fields(e.Stdout, "Token ID", t.ID, "SCIM base URL", c.base+"/scim/v2")
				fmt.Fprintln(e.Stderr, "\nThis token will not be shown again. Give it to your identity provider's SCIM provisioning as the bearer token.")
				return nil
			})
		},
	}
}

func scimTokenListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List SCIM tokens (never their secrets)",
		Example: `  gatehouse scim token list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("scim-tokens"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				ts, err := decodeList[struct {
					ID        string     `json:"id"`
					CreatedAt time.Time  `json:"created_at"`
					RevokedAt *time.Time `json:"revoked_at"`
				}](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, t := range ts {
					status := "active"
					if t.RevokedAt != nil {
						status = "revoked " + t.RevokedAt.UTC().Format(time.RFC3339)
					}
					rows = append(rows, []string{t.ID, t.CreatedAt.UTC().Format(time.RFC3339), status})
				}
				return table(e.Stdout, []string{"ID", "CREATED", "STATUS"}, rows)
			})
		},
	}
}

func scimTokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a SCIM token; provisioning calls with it are refused at once",
		Example: `  gatehouse scim token revoke 3f2k...`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("scim-tokens", args[0]), false)
			if err != nil {
				return err
			}
			return e.done(raw, "SCIM token %s revoked.", args[0])
		},
	}
}
