package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// repositoryBody is what the API accepts for a repository: the writable fields only.
type repositoryBody struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Version  string `json:"version"`
	Hostname string `json:"hostname"`
	Port     int    `json:"port,omitempty"`
	Database string `json:"database,omitempty"`
	TLSMode  string `json:"tls_mode,omitempty"`
	CABundle string `json:"ca_bundle,omitempty"`
	// RecordParameters is sent always: a PUT without it would turn recording off.
	RecordParameters bool `json:"record_parameters"`
}

type repositoryFlags struct {
	name, typ, version, hostname, database, tlsMode, caFile string
	port                                                    int
	recordParameters                                        bool
}

func (f *repositoryFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "repository name: lowercase letters, digits, _ or -")
	fl.StringVar(&f.typ, "type", "", "database type: postgresql, mysql, sqlserver or oracle")
	fl.StringVar(&f.version, "version", "", `database version, like "15" or "8.0"`)
	fl.StringVar(&f.hostname, "hostname", "", "database host name (RFC 1123, no scheme), like db1.example.com")
	fl.IntVar(&f.port, "port", 0, "database port (default: the type's usual port)")
	fl.StringVar(&f.database, "database", "", "default database name")
	fl.StringVar(&f.tlsMode, "tls-mode", "", "TLS to the database: disable, allow, prefer, require, verify-ca or verify-full (default prefer)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file with the CA certificates for verify-ca and verify-full")
	fl.BoolVar(&f.recordParameters, "record-parameters", false, "record bind parameter values in activity (--record-parameters=false turns it off; default off)")
}

// apply overlays the flags that were given onto b.
func (f *repositoryFlags) apply(cmd *cobra.Command, b *repositoryBody) error {
	ch := cmd.Flags().Changed
	if ch("type") {
		b.Type = f.typ
	}
	if ch("version") {
		b.Version = f.version
	}
	if ch("hostname") {
		b.Hostname = f.hostname
	}
	if ch("port") {
		b.Port = f.port
	}
	if ch("database") {
		b.Database = f.database
	}
	if ch("tls-mode") {
		b.TLSMode = f.tlsMode
	}
	if ch("record-parameters") {
		b.RecordParameters = f.recordParameters
	}
	if ch("ca-file") {
		ca, err := readFileFlag("ca-file", f.caFile)
		if err != nil {
			return err
		}
		b.CABundle = ca
	}
	return nil
}

func readFileFlag(flag, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", usageErrorf("--%s: %v", flag, err)
	}
	return string(b), nil
}

func newRepositoryCmd(e *env) *cobra.Command {
	cmd := group("repository", "Register and manage repositories (databases) and their users",
		repositoryCreateCmd(e), repositoryGetCmd(e), repositoryUpdateCmd(e), repositoryDeleteCmd(e), repositoryListCmd(e),
		newRepositoryUserCmd(e))
	cmd.Aliases = []string{"repositories", "repo"}
	return cmd
}

func repositoryCreateCmd(e *env) *cobra.Command {
	var f repositoryFlags
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Register a database as a repository",
		Example: `  gatehouse repository create --name sales --type postgresql --version 15 \
      --hostname db1.example.com --port 5432 --database postgres --tls-mode verify-full --ca-file rds-ca.pem`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			b := repositoryBody{Name: name}
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("repositories"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepository(e, raw, "Repository registered.") })
		},
	}
	f.add(cmd)
	return cmd
}

func printRepository(e *env, raw []byte, title string) error {
	r, err := decode[gatehouse.Repository](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	ca := ""
	if r.CABundle != "" {
		ca = fmt.Sprintf("%d certificate(s)", strings.Count(r.CABundle, "BEGIN CERTIFICATE"))
	}
	return fields(e.Stdout,
		"Name", r.Name, "Type", string(r.Type), "Version", r.Version, "Hostname", r.Hostname,
		"Port", itoa(r.Port), "Database", r.Database, "TLS mode", string(r.TLSMode), "CA bundle", ca,
		"Record parameters", yesNo(r.RecordParameters),
		"Created", ts(r.CreatedAt), "Updated", ts(r.UpdatedAt))
}

func repositoryGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a repository",
		Example: `  gatehouse repository get sales`,
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories", name))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepository(e, raw, "") })
		},
	}
	cmd.Flags().String("name", "", "repository name")
	return cmd
}

func repositoryUpdateCmd(e *env) *cobra.Command {
	var f repositoryFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a repository; fields without a flag keep their value",
		Example: `  gatehouse repository update sales --hostname db2.example.com --tls-mode require
  gatehouse repository update sales --record-parameters`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories", name))
			if err != nil {
				return err
			}
			r, err := decode[gatehouse.Repository](raw)
			if err != nil {
				return err
			}
			b := repositoryBody{Name: r.Name, Type: string(r.Type), Version: r.Version, Hostname: r.Hostname,
				Port: r.Port, Database: r.Database, TLSMode: string(r.TLSMode), CABundle: r.CABundle, RecordParameters: r.RecordParameters}
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			raw, err = c.put(cmd.Context(), path("repositories", name), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printRepository(e, raw, "Repository updated.") })
		},
	}
	f.add(cmd)
	return cmd
}

func repositoryDeleteCmd(e *env) *cobra.Command {
	var cascade bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a repository and its users",
		Long: `Delete a repository and its repository users. It is refused while bindings or impersonation
policies refer to the repository; --cascade deletes those too.`,
		Example: `  gatehouse repository delete sales
  gatehouse repository delete sales --cascade`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("repositories", name), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Repository %s deleted.", name)
		},
	}
	cmd.Flags().String("name", "", "repository name")
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also delete the bindings and impersonation policies that refer to it")
	return cmd
}

func repositoryListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List repositories",
		Example: `  gatehouse repository list
  gatehouse repository list --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("repositories"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				rs, err := decodeList[gatehouse.Repository](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, r := range rs {
					rows = append(rows, []string{r.Name, string(r.Type), r.Version, r.Hostname, itoa(r.Port), r.Database, string(r.TLSMode)})
				}
				return table(e.Stdout, []string{"NAME", "TYPE", "VERSION", "HOSTNAME", "PORT", "DATABASE", "TLS MODE"}, rows)
			})
		},
	}
}
