package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gatehousedb/gatehouse"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the control plane refused, or something failed
	ExitUsage = 2 // the command line was wrong
)

// Options are the process's surroundings, injected so tests can run commands in-process.
type Options struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Interactive reports whether a person is at the keyboard (prompts and confirmations are
	// allowed); nil means "stdin is a terminal".
	Interactive func() bool
	// ReadPassword reads a line without echo; nil means golang.org/x/term on stdin.
	ReadPassword func() (string, error)
}

// env carries the options and the global flags to every command.
type env struct {
	Options
	server   string // --server
	output   string // --output
	logLevel string // --log-level
}

// Main runs the gatehouse command line with args (without the program name) and returns the exit
// code. Errors are printed to stderr as "Error: ...".
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, Options{Stdin: stdin, Stdout: stdout, Stderr: stderr}, args)
}

// Run is Main with every option: tests use it to run the whole command line in-process.
func Run(ctx context.Context, opts Options, args []string) int {
	cmd := NewCommand(opts)
	stderr := cmd.ErrOrStderr()
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "Error: "+errorText(err))
	var u *usageError
	if errors.As(err, &u) || isCobraUsage(err) {
		if name := commandPath(cmd, args); name != "" {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
		}
		return ExitUsage
	}
	return ExitError
}

// NewCommand returns the root `gatehouse` command.
func NewCommand(opts Options) *cobra.Command {
	e := &env{Options: opts}
	if e.Stdin == nil {
		e.Stdin = os.Stdin
	}
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	if e.Stderr == nil {
		e.Stderr = os.Stderr
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Interactive == nil {
		e.Interactive = func() bool {
			f, ok := e.Stdin.(*os.File)
			return ok && term.IsTerminal(int(f.Fd()))
		}
	}
	if e.ReadPassword == nil {
		e.ReadPassword = func() (string, error) {
			f, ok := e.Stdin.(*os.File)
			if !ok {
				return "", errors.New("standard input is not a terminal")
			}
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(e.Stderr)
			return string(b), err
		}
	}

	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "Gatehouse: a self-hosted database access gateway",
		Long: `Gatehouse lets people connect any SQL client to a database through a sidecar, with a
short-lived access token as the password, while the real credentials stay in your own secret source.

This one binary runs the control plane (gatehouse server), the sidecar (gatehouse sidecar) and the
command line for admins and data consumers.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetIn(e.Stdin)
	root.SetOut(e.Stdout)
	root.SetErr(e.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })

	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", "", "control plane URL (default: $GATEHOUSE_SERVER, else the server of the stored login session)")
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&e.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if e.output != "table" && e.output != "json" {
			return usageErrorf("--output must be table or json, not %q", e.output)
		}
		if _, err := parseLevel(e.logLevel); err != nil {
			return err
		}
		return nil
	}

	root.AddCommand(
		newServerCmd(e),
		newLoginCmd(e),
		newLogoutCmd(e),
		newWhoamiCmd(e),
		newRepositoryCmd(e),
		newSidecarCmd(e),
		newPolicyCmd(e),
		newActivityCmd(e),
		newUserCmd(e),
		newGroupCmd(e),
		newTokenCmd(e),
		newConnectionsCmd(e),
		newConnectCmd(e),
		newSCIMCmd(e),
		newSettingsCmd(e),
		newQuickstartCmd(e),
	)
	for _, c := range allCommands(root) {
		c.SetFlagErrorFunc(root.FlagErrorFunc())
	}
	return root
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, allCommands(s)...)
	}
	return out
}

// logger returns a text logger on stderr at the --log-level.
func (e *env) logger() *slog.Logger {
	lvl, _ := parseLevel(e.logLevel)
	return slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageErrorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// usageError is a mistake on the command line; Main exits 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// isCobraUsage recognises the usage errors cobra makes itself (unknown command, wrong arguments).
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "required flag", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		if strings.HasPrefix(s, p) || strings.Contains(s, " "+p) {
			return true
		}
	}
	return false
}

// errorText is how an error is shown after "Error: ". A control-plane error shows its field,
// message and code: "name: must be lowercase letters, ... (invalid)".
func errorText(err error) string {
	var ge *gatehouse.Error
	if errors.As(err, &ge) {
		return ge.Error() + " (" + ge.Code + ")"
	}
	return err.Error()
}

// commandPath finds the deepest command args name, for the "--help" hint.
func commandPath(root *cobra.Command, args []string) string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return root.Name()
	}
	return c.CommandPath()
}

// Argument validators that return usage errors.

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s needs %d argument(s) (%s), got %d", cmd.CommandPath(), n, strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("%s takes at most %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}

// group returns a command that only holds subcommands: with no arguments it prints its help, with
// an unknown one it is a usage error.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// nameFrom takes an object's name from the single positional argument or from a flag, requiring
// exactly one of them.
func nameFrom(cmd *cobra.Command, args []string, flag string) (string, error) {
	v, _ := cmd.Flags().GetString(flag)
	switch {
	case len(args) == 1 && v != "" && v != args[0]:
		return "", usageErrorf("the name is given twice (%q and --%s %q)", args[0], flag, v)
	case len(args) == 1:
		return args[0], nil
	case v != "":
		return v, nil
	}
	return "", usageErrorf("%s needs a name: give it as an argument or with --%s", cmd.CommandPath(), flag)
}

// confirm asks the person at the keyboard to type "yes". Without a person it refuses unless
// assumeYes (--yes) is set.
func (e *env) confirm(prompt string, assumeYes bool) error {
	if assumeYes {
		return nil
	}
	if !e.Interactive() {
		return usageErrorf("%s: confirm with --yes when not running interactively", strings.SplitN(prompt, "\n", 2)[0])
	}
	fmt.Fprint(e.Stderr, prompt+"\nType \"yes\" to continue: ")
	line, err := readLine(e.Stdin)
	if err != nil {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

// readLine reads one line byte by byte, so nothing after it is consumed from a shared stdin.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimSuffix(b.String(), "\r"), nil
			}
			b.WriteByte(buf[0])
		}
		if err == io.EOF {
			if b.Len() == 0 {
				return "", io.ErrUnexpectedEOF
			}
			return strings.TrimSuffix(b.String(), "\r"), nil
		}
		if err != nil {
			return "", err
		}
	}
}
