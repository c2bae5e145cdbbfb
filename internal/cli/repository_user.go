package cli

import (
	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// repositoryUserBody is what the API accepts for a repository user. There is deliberately no field
// or flag for a secret value: only where the sidecar finds it.
type repositoryUserBody struct {
	Username string              `json:"username"`
	Secret   gatehouse.SecretRef `json:"secret"`
}

// secretFlags are the per-source fields of a secret reference.
type secretFlags struct {
	source, arn, jsonPath, versionStage, vaultURI, secretName, secretVersion, envName, filePath, region string
}

func (f *secretFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.source, "secret-source", "", "where the sidecar fetches the credential: aws-secrets-manager, azure-key-vault, env, file, aws-rds-iam or azure-entra")
	fl.StringVar(&f.arn, "arn", "", "aws-secrets-manager: the secret's ARN (its region is taken from it)")
	fl.StringVar(&f.jsonPath, "json-path", "", "aws-secrets-manager: dot path of the password in a JSON secret, like password or nested.password")
	fl.StringVar(&f.versionStage, "version-stage", "", "aws-secrets-manager: version stage (default AWSCURRENT)")
	fl.StringVar(&f.vaultURI, "vault-uri", "", "azure-key-vault: the vault URI, like https://myvault.vault.azure.net/")
	fl.StringVar(&f.secretName, "secret-name", "", "azure-key-vault: the secret's name")
	fl.StringVar(&f.secretVersion, "secret-version", "", "azure-key-vault: a secret version (default: the current one)")
	fl.StringVar(&f.envName, "env-name", "", "env: the environment variable on the sidecar that holds the password")
	fl.StringVar(&f.filePath, "file-path", "", "file: absolute path of the file on the sidecar that holds the password")
	fl.StringVar(&f.region, "region", "", "aws-rds-iam: AWS region of the database (default: the sidecar's)")
}

// apply overlays the given flags onto ref. A new --secret-source starts a fresh reference, so no
// field of the old source is carried over.
func (f *secretFlags) apply(cmd *cobra.Command, ref *gatehouse.SecretRef) {
	ch := cmd.Flags().Changed
	if ch("secret-source") && gatehouse.SecretSource(f.source) != ref.Source {
		*ref = gatehouse.SecretRef{Source: gatehouse.SecretSource(f.source)}
	}
	set := func(flag string, dst *string, v string) {
		if ch(flag) {
			*dst = v
		}
	}
	set("arn", &ref.ARN, f.arn)
	set("json-path", &ref.JSONPath, f.jsonPath)
	set("version-stage", &ref.VersionStage, f.versionStage)
	set("vault-uri", &ref.VaultURI, f.vaultURI)
	set("secret-name", &ref.SecretName, f.secretName)
	set("secret-version", &ref.Version, f.secretVersion)
	set("env-name", &ref.Name, f.envName)
	set("file-path", &ref.Path, f.filePath)
	set("region", &ref.Region, f.region)
}

func newRepositoryUserCmd(e *env) *cobra.Command {
	return group("user", "Register and manage repository users (database credentials, by reference)",
		repoUserCreateCmd(e), repoUserGetCmd(e), repoUserUpdateCmd(e), repoUserDeleteCmd(e), repoUserListCmd(e))
}

// repoUserTarget reads --repository and the user name (argument or --username).
func repoUserTarget(cmd *cobra.Command, args []string) (repo, user string, err error) {
	repo, _ = cmd.Flags().GetString("repository")
	if repo == "" {
		return "", "", usageErrorf("--repository is required")
	}
	user, err = nameFrom(cmd, args, "username")
	return repo, user, err
}

func repoUserFlags(cmd *cobra.Command) {
	cmd.Flags().String("repository", "", "repository name (required)")
	cmd.Flags().String("username", "", "the database user name")
}

func printRepoUser(e *env, raw []byte, title string) error {
	u, err := decode[gatehouse.RepositoryUser](raw)
	if err != nil {
		return err
	}
	if title != "" {
		e.Stdout.Write([]byte(title + "\n"))
	}
	return fields(e.Stdout, "Repository", u.Repository, "Username", u.Username,
		"Secret source", string(u.Secret.Source), "Secret reference", u.Secret.String(),
		"Created", ts(u.CreatedAt), "Updated", ts(u.UpdatedAt))
}

func repoUserCreateCmd(e *env) *cobra.Command {
	var f secretFlags
	cmd := &cobra.Command{
		Use:   "create [USERNAME]",
		Short: "Register a repository user: a database user name and where its secret lives",
		Long: `Register a database credential on a repository. Gatehouse stores only a reference to the
secret; the sidecar fetches the password (or token) from the secret source when it connects.`,
		Example: `  gatehouse repository user create --repository sales --username admin_user \
      --secret-source aws-secrets-manager --arn arn:aws:secretsmanager:us-east-2:111111111111:secret:username-KkAAcC --json-path password
  gatehouse repository user create --repository sales --username app \
      --secret-source azure-key-vault --vault-uri https://123sidecar456.vault.azure.net/ --secret-name prod-user-admin
  gatehouse repository user create --repository sales --username report --secret-source env --env-name SALES_REPORT_PASSWORD
  gatehouse repository user create --repository sales --username etl --secret-source file --file-path /run/secrets/etl
  gatehouse repository user create --repository sales --username iam_user --secret-source aws-rds-iam --region us-east-2
  gatehouse repository user create --repository sales --username entra_user --secret-source azure-entra`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, user, err := repoUserTarget(cmd, args)
			if err != nil {
				return err
			}
			if f.source == "" {
				return usageErrorf("--secret-source is required")
			}
			b := repositoryUserBody{Username: user}
			f.apply(cmd, &b.Secret)
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("repositories", repo, "users"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepoUser(e, raw, "Repository user registered.") })
		},
	}
	repoUserFlags(cmd)
	f.add(cmd)
	return cmd
}

func repoUserGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get USERNAME --repository REPOSITORY",
		Short:   "Show a repository user",
		Example: `  gatehouse repository user get admin_user --repository sales`,
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, user, err := repoUserTarget(cmd, args)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories", repo, "users", user))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepoUser(e, raw, "") })
		},
	}
	repoUserFlags(cmd)
	return cmd
}

func repoUserUpdateCmd(e *env) *cobra.Command {
	var f secretFlags
	cmd := &cobra.Command{
		Use:   "update USERNAME --repository REPOSITORY",
		Short: "Change where a repository user's secret lives",
		Long: `Change a repository user's secret reference. With --secret-source the reference starts afresh
for that source; without it, the given per-source flags change the current reference.`,
		Example: `  gatehouse repository user update admin_user --repository sales --json-path nested.password
  gatehouse repository user update admin_user --repository sales --secret-source env --env-name SALES_ADMIN_PASSWORD`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, user, err := repoUserTarget(cmd, args)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories", repo, "users", user))
			if err != nil {
				return err
			}
			cur, err := decode[gatehouse.RepositoryUser](raw)
			if err != nil {
				return err
			}
			b := repositoryUserBody{Username: cur.Username, Secret: cur.Secret}
			f.apply(cmd, &b.Secret)
			raw, err = c.put(cmd.Context(), path("repositories", repo, "users", user), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepoUser(e, raw, "Repository user updated.") })
		},
	}
	repoUserFlags(cmd)
	f.add(cmd)
	return cmd
}

func repoUserDeleteCmd(e *env) *cobra.Command {
	var cascade bool
	cmd := &cobra.Command{
		Use:   "delete USERNAME --repository REPOSITORY",
		Short: "Delete a repository user",
		Long: `Delete a repository user. It is refused while impersonation rules name it; --cascade removes it
from those rules (and drops rules left with no repository user).`,
		Example: `  gatehouse repository user delete admin_user --repository sales --cascade`,
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, user, err := repoUserTarget(cmd, args)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("repositories", repo, "users", user), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Repository user %s deleted from %s.", user, repo)
		},
	}
	repoUserFlags(cmd)
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also remove it from impersonation rules")
	return cmd
}

func repoUserListCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list --repository REPOSITORY",
		Short:   "List a repository's users",
		Example: `  gatehouse repository user list --repository sales`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, _ := cmd.Flags().GetString("repository")
			if repo == "" {
				return usageErrorf("--repository is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories", repo, "users"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				us, err := decodeList[gatehouse.RepositoryUser](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, u := range us {
					rows = append(rows, []string{u.Username, string(u.Secret.Source), u.Secret.String()})
				}
				return table(e.Stdout, []string{"USERNAME", "SECRET SOURCE", "SECRET REFERENCE"}, rows)
			})
		},
	}
	cmd.Flags().String("repository", "", "repository name (required)")
	return cmd
}
