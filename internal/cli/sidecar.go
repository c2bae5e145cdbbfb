package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// sidecarBody is what the API accepts for a sidecar.
type sidecarBody struct {
	DisplayName             string `json:"display_name"`
	Hostname                string `json:"hostname"`
	PublicKey               string `json:"public_key"`
	SecondPublicKey         string `json:"second_public_key,omitempty"`
	AllowUnsupportedQueries bool   `json:"allow_unsupported_queries"`
}

// registered is the answer to registering a sidecar.
type registered struct {
	gatehouse.Sidecar
	ControlPlaneURL string `json:"control_plane_url"`
}

const unsupportedQueriesWarning = `Allow unsupported queries: statements the sidecar cannot parse will run instead of failing.
This applies to access management policies (not impersonation policies) and may allow
unauthorized data access.`

// newSidecarCmd is `gatehouse sidecar`. Running a sidecar (`gatehouse sidecar --control-plane ...`),
// `sidecar keygen` and `sidecar instances` are added by addSidecarRunCommands in sidecar_run.go,
// which the sidecar work owns; this file owns registration and the sidecar's objects.
func newSidecarCmd(e *env) *cobra.Command {
	cmd := group("sidecar", "Register and manage sidecars, their listener ports and bindings",
		sidecarRegisterCmd(e), sidecarGetCmd(e), sidecarListCmd(e), sidecarUpdateCmd(e), sidecarDeleteCmd(e),
		newPortCmd(e), newBindingCmd(e))
	cmd.Aliases = []string{"sidecars"}
	addSidecarRunCommands(e, cmd) // the single hook for sidecar_run.go
	return cmd
}

type sidecarFlags struct {
	displayName, hostname, publicKeyFile, secondPublicKeyFile string
	allowUnsupported, yes                                     bool
}

func (f *sidecarFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.displayName, "display-name", "", "a friendly name for the sidecar")
	fl.StringVar(&f.hostname, "hostname", "", "the sidecar's DNS name (RFC 1123, no scheme): the load balancer data consumers connect to")
	fl.StringVar(&f.publicKeyFile, "public-key-file", "", "PEM file with the sidecar's RSA public key (2048 bits or more)")
	fl.StringVar(&f.secondPublicKeyFile, "second-public-key-file", "", "PEM file with a second RSA public key, for key rotation")
	fl.BoolVar(&f.allowUnsupported, "allow-unsupported-queries", false, "let statements the sidecar cannot parse run instead of failing (asks for confirmation)")
	fl.BoolVar(&f.yes, "yes", false, "confirm --allow-unsupported-queries without asking")
}

func (f *sidecarFlags) apply(cmd *cobra.Command, b *sidecarBody) error {
	ch := cmd.Flags().Changed
	if ch("display-name") {
		b.DisplayName = f.displayName
	}
	if ch("hostname") {
		b.Hostname = f.hostname
	}
	if ch("public-key-file") {
		k, err := readFileFlag("public-key-file", f.publicKeyFile)
		if err != nil {
			return err
		}
		b.PublicKey = k
	}
	if ch("second-public-key-file") {
		k, err := readFileFlag("second-public-key-file", f.secondPublicKeyFile)
		if err != nil {
			return err
		}
		b.SecondPublicKey = k
	}
	if ch("allow-unsupported-queries") {
		b.AllowUnsupportedQueries = f.allowUnsupported
	}
	return nil
}

func sidecarRegisterCmd(e *env) *cobra.Command {
	var f sidecarFlags
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register a sidecar and get its Sidecar ID",
		Long: `Register a sidecar with its RSA public key. Make the key pair on the sidecar's host with:

  openssl genpkey -out private.pem -algorithm RSA -pkeyopt rsa_keygen_bits:2048
  openssl rsa -in private.pem -pubout -out public.pem

The answer is the Sidecar ID and the control-plane URL, and the command that runs the sidecar.`,
		Example: `  gatehouse sidecar register --display-name east --hostname sidecar.example.com --public-key-file public.pem
  gatehouse sidecar register --display-name lab --hostname lab.example.com --public-key-file public.pem \
      --allow-unsupported-queries --yes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.publicKeyFile == "" {
				return usageErrorf("--public-key-file is required")
			}
			var b sidecarBody
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if b.AllowUnsupportedQueries {
				if err := e.confirm(unsupportedQueriesWarning, f.yes); err != nil {
					return err
				}
			}
			raw, err := c.post(cmd.Context(), path("sidecars"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				r, err := decode[registered](raw)
				if err != nil {
					return err
				}
				cp := r.ControlPlaneURL
				if cp == "" {
					cp = c.base
				}
				fmt.Fprintln(e.Stdout, "Sidecar registered.")
				fields(e.Stdout, "Sidecar ID", r.ID, "Control plane URL", cp, "Display name", r.DisplayName,
					"Hostname", r.Hostname, "Allow unsupported queries", yesNo(r.AllowUnsupportedQueries))
				fmt.Fprintf(e.Stdout, "\nRun the sidecar on its host with:\n  gatehouse sidecar --control-plane %s --sidecar-id %s --private-key private.pem\n", cp, r.ID)
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}

func printSidecar(e *env, raw []byte, title string) error {
	s, err := decode[gatehouse.Sidecar](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	second := "no"
	if s.SecondPublicKey != "" {
		second = "yes"
	}
	return fields(e.Stdout, "Sidecar ID", s.ID, "Display name", s.DisplayName, "Hostname", s.Hostname,
		"Second public key", second, "Allow unsupported queries", yesNo(s.AllowUnsupportedQueries),
		"Created", ts(s.CreatedAt), "Updated", ts(s.UpdatedAt))
}

func sidecarGetCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "get SIDECAR_ID",
		Short:   "Show a sidecar",
		Example: `  gatehouse sidecar get 3f2a9c`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars", args[0]))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printSidecar(e, raw, "") })
		},
	}
}

func sidecarListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List sidecars",
		Example: `  gatehouse sidecar list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				ss, err := decodeList[gatehouse.Sidecar](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, s := range ss {
					rows = append(rows, []string{s.ID, s.DisplayName, s.Hostname, yesNo(s.AllowUnsupportedQueries)})
				}
				return table(e.Stdout, []string{"SIDECAR ID", "DISPLAY NAME", "HOSTNAME", "UNSUPPORTED QUERIES"}, rows)
			})
		},
	}
}

func sidecarUpdateCmd(e *env) *cobra.Command {
	var f sidecarFlags
	var clearSecond bool
	cmd := &cobra.Command{
		Use:   "update SIDECAR_ID",
		Short: "Change a sidecar; fields without a flag keep their value",
		Example: `  gatehouse sidecar update 3f2a9c --second-public-key-file new-public.pem
  gatehouse sidecar update 3f2a9c --public-key-file new-public.pem --clear-second-public-key`,
		Args: exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars", args[0]))
			if err != nil {
				return err
			}
			s, err := decode[gatehouse.Sidecar](raw)
			if err != nil {
				return err
			}
			b := sidecarBody{DisplayName: s.DisplayName, Hostname: s.Hostname, PublicKey: s.PublicKey,
				SecondPublicKey: s.SecondPublicKey, AllowUnsupportedQueries: s.AllowUnsupportedQueries}
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			if clearSecond {
				b.SecondPublicKey = ""
			}
			if b.AllowUnsupportedQueries && !s.AllowUnsupportedQueries {
				if err := e.confirm(unsupportedQueriesWarning, f.yes); err != nil {
					return err
				}
			}
			raw, err = c.put(cmd.Context(), path("sidecars", args[0]), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printSidecar(e, raw, "Sidecar updated.") })
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&clearSecond, "clear-second-public-key", false, "remove the second public key (after a rotation)")
	return cmd
}

func sidecarDeleteCmd(e *env) *cobra.Command {
	var cascade bool
	cmd := &cobra.Command{
		Use:     "delete SIDECAR_ID",
		Short:   "Delete a sidecar",
		Long:    `Delete a sidecar. It is refused while it has listener ports or bindings; --cascade deletes those too.`,
		Example: `  gatehouse sidecar delete 3f2a9c --cascade`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("sidecars", args[0]), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Sidecar %s deleted.", args[0])
		},
	}
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also delete its listener ports and bindings")
	return cmd
}

// Listener ports.

func newPortCmd(e *env) *cobra.Command {
	return group("port", "Manage a sidecar's listener ports", portCreateCmd(e), portListCmd(e), portDeleteCmd(e))
}

func portCreateCmd(e *env) *cobra.Command {
	var port int
	var typ, version string
	cmd := &cobra.Command{
		Use:     "create SIDECAR_ID --port PORT --type TYPE --version VERSION",
		Short:   "Register a listener port: the sidecar presents this database type and version on it",
		Example: `  gatehouse sidecar port create 3f2a9c --port 15432 --type postgresql --version 15`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("port") {
				return usageErrorf("--port is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("sidecars", args[0], "ports"),
				map[string]any{"port": port, "type": typ, "version": version})
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				p, err := decode[gatehouse.ListenerPort](raw)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.Stdout, "Listener port registered.")
				return fields(e.Stdout, "Sidecar ID", args[0], "Port", itoa(p.Port), "Type", string(p.Type), "Version", p.Version)
			})
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "port number the sidecar listens on")
	cmd.Flags().StringVar(&typ, "type", "", "database type presented: postgresql, mysql, sqlserver or oracle")
	cmd.Flags().StringVar(&version, "version", "", `database version presented, like "15"`)
	return cmd
}

func portListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list SIDECAR_ID",
		Short:   "List a sidecar's listener ports",
		Example: `  gatehouse sidecar port list 3f2a9c`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars", args[0], "ports"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				ps, err := decodeList[gatehouse.ListenerPort](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, p := range ps {
					rows = append(rows, []string{itoa(p.Port), string(p.Type), p.Version})
				}
				return table(e.Stdout, []string{"PORT", "TYPE", "VERSION"}, rows)
			})
		},
	}
}

func portDeleteCmd(e *env) *cobra.Command {
	var port int
	var cascade bool
	cmd := &cobra.Command{
		Use:     "delete SIDECAR_ID --port PORT",
		Short:   "Delete a listener port",
		Long:    `Delete a listener port. It is refused while bindings use it; --cascade deletes those too.`,
		Example: `  gatehouse sidecar port delete 3f2a9c --port 15432 --cascade`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("port") {
				return usageErrorf("--port is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("sidecars", args[0], "ports", strconv.Itoa(port)), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Listener port %d deleted from sidecar %s.", port, args[0])
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "port number")
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also delete the bindings that use it")
	return cmd
}

// Bindings.

func newBindingCmd(e *env) *cobra.Command {
	return group("binding", "Bind a sidecar's listener ports to repositories", bindingCreateCmd(e), bindingListCmd(e), bindingDeleteCmd(e))
}

func bindingFlags(cmd *cobra.Command, port *int, repo *string) {
	cmd.Flags().IntVar(port, "port", 0, "the sidecar's listener port")
	cmd.Flags().StringVar(repo, "repository", "", "repository name")
}

func bindingCreateCmd(e *env) *cobra.Command {
	var port int
	var repo string
	cmd := &cobra.Command{
		Use:   "create SIDECAR_ID --port PORT --repository REPOSITORY",
		Short: "Send connections on a listener port to a repository",
		Long: `Bind a listener port to a repository. The port must present the same database type as the
repository, and a compatible version (the same major version; for MySQL the same major.minor).`,
		Example: `  gatehouse sidecar binding create 3f2a9c --port 15432 --repository sales`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("port") || repo == "" {
				return usageErrorf("--port and --repository are required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("sidecars", args[0], "bindings"), map[string]any{"port": port, "repository": repo})
			if err != nil {
				return err
			}
			return e.done(raw, "Bound port %d of sidecar %s to repository %s.", port, args[0], repo)
		},
	}
	bindingFlags(cmd, &port, &repo)
	return cmd
}

func bindingListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list SIDECAR_ID",
		Short:   "List a sidecar's bindings",
		Example: `  gatehouse sidecar binding list 3f2a9c`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars", args[0], "bindings"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				bs, err := decodeList[gatehouse.Binding](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, b := range bs {
					rows = append(rows, []string{itoa(b.Port), b.Repository})
				}
				return table(e.Stdout, []string{"PORT", "REPOSITORY"}, rows)
			})
		},
	}
}

func bindingDeleteCmd(e *env) *cobra.Command {
	var port int
	var repo string
	cmd := &cobra.Command{
		Use:     "delete SIDECAR_ID --port PORT --repository REPOSITORY",
		Short:   "Remove a binding",
		Example: `  gatehouse sidecar binding delete 3f2a9c --port 15432 --repository sales`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("port") || repo == "" {
				return usageErrorf("--port and --repository are required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("sidecars", args[0], "bindings", strconv.Itoa(port), repo), false)
			if err != nil {
				return err
			}
			return e.done(raw, "Removed the binding of port %d of sidecar %s to repository %s.", port, args[0], repo)
		},
	}
	bindingFlags(cmd, &port, &repo)
	cmd.Flags().Bool("cascade", false, "accepted for symmetry; a binding has no dependents")
	return cmd
}
