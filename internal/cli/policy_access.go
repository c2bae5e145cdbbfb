package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// accessPolicyBody is what the API accepts for an access management policy.
type accessPolicyBody struct {
	Name       string                 `json:"name"`
	Repository string                 `json:"repository"`
	Mode       string                 `json:"mode,omitempty"`
	Rules      []gatehouse.AccessRule `json:"rules"`
}

const accessRuleKeys = "effect, users, groups, objects, operations"

// parseAccessRule parses "effect=deny;users=a@x.com;groups=analysts;objects=public.salaries.*;operations=select".
func parseAccessRule(s string) (gatehouse.AccessRule, error) {
	var r gatehouse.AccessRule
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return r, usageErrorf("--rule %q: %q is not key=value (keys: %s)", s, part, accessRuleKeys)
		}
		var vals []string
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				vals = append(vals, x)
			}
		}
		switch strings.TrimSpace(k) {
		case "effect":
			r.Effect = strings.TrimSpace(v)
		case "users", "user":
			r.Users = append(r.Users, vals...)
		case "groups", "group":
			r.Groups = append(r.Groups, vals...)
		case "objects", "object":
			r.Objects = append(r.Objects, vals...)
		case "operations", "operation", "ops":
			r.Operations = append(r.Operations, vals...)
		default:
			return r, usageErrorf("--rule %q: unknown key %q (keys: %s)", s, k, accessRuleKeys)
		}
	}
	if r.Effect == "" {
		r.Effect = gatehouse.EffectAllow
	}
	return r, nil
}

type accessPolicyFlags struct {
	name, repository, mode, file string
	rules                        []string
}

func (f *accessPolicyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "policy name: lowercase letters, digits, _ or -")
	fl.StringVar(&f.repository, "repository", "", "the repository whose statements the policy governs")
	fl.StringVar(&f.mode, "mode", "", "enforce (default: denials are refused) or monitor (denials are only recorded)")
	fl.StringArrayVar(&f.rules, "rule", nil, `a rule, repeatable, in order: 'effect=deny;users=a@x.com;groups=analysts;objects=public.salaries.*;operations=select'`)
	fl.StringVar(&f.file, "file", "", "read the policy from a JSON file (flags override its fields)")
}

func (f *accessPolicyFlags) apply(cmd *cobra.Command, b *accessPolicyBody) error {
	ch := cmd.Flags().Changed
	if f.file != "" {
		data, err := os.ReadFile(f.file)
		if err != nil {
			return usageErrorf("--file: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var p accessPolicyBody
		if err := dec.Decode(&p); err != nil {
			return usageErrorf("--file %s: %v (want {\"name\":..., \"repository\":..., \"mode\":\"enforce\", \"rules\":[{\"effect\":\"deny\", \"users\":[...], \"groups\":[...], \"objects\":[...], \"operations\":[...]}]})", f.file, err)
		}
		if p.Name != "" {
			b.Name = p.Name
		}
		if p.Repository != "" {
			b.Repository = p.Repository
		}
		if p.Mode != "" {
			b.Mode = p.Mode
		}
		if p.Rules != nil {
			b.Rules = p.Rules
		}
	}
	if ch("repository") {
		b.Repository = f.repository
	}
	if ch("mode") {
		b.Mode = f.mode
	}
	if ch("rule") {
		if f.file != "" {
			return usageErrorf("give the rules with --rule or in --file, not both")
		}
		b.Rules = nil
		for _, s := range f.rules {
			r, err := parseAccessRule(s)
			if err != nil {
				return err
			}
			b.Rules = append(b.Rules, r)
		}
	}
	return nil
}

func newPolicyAccessCmd(e *env) *cobra.Command {
	return group("access", "Manage access management policies: which statements users and groups may run on a repository",
		accessCreateCmd(e), accessGetCmd(e), accessUpdateCmd(e), accessDeleteCmd(e), accessListCmd(e))
}

func printAccessPolicy(e *env, raw []byte, title string) error {
	p, err := decode[gatehouse.AccessPolicy](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	if err := fields(e.Stdout, "Name", p.Name, "Repository", p.Repository, "Mode", p.Mode,
		"Created", ts(p.CreatedAt), "Updated", ts(p.UpdatedAt)); err != nil {
		return err
	}
	var rows [][]string
	for i, r := range p.Rules {
		rows = append(rows, []string{fmt.Sprintf("%s#%d", p.Name, i), r.Effect, strings.Join(r.Users, ","), strings.Join(r.Groups, ","),
			strings.Join(r.Objects, ","), strings.Join(r.Operations, ",")})
	}
	fmt.Fprintln(e.Stdout)
	return table(e.Stdout, []string{"RULE", "EFFECT", "USERS", "GROUPS", "OBJECTS", "OPERATIONS"}, rows)
}

func accessCreateCmd(e *env) *cobra.Command {
	var f accessPolicyFlags
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create an access management policy",
		Long: `Create an access management policy on a repository. Rules are evaluated per statement: a deny
rule that matches refuses the statement; once a repository has any enforcing policy, a statement
no allow rule covers is refused too. With --mode monitor, decisions are recorded but never applied.`,
		Example: `  gatehouse policy access create --name salaries --repository sales \
      --rule 'effect=allow;objects=*;operations=*' \
      --rule 'effect=deny;groups=contractors;objects=public.salaries.*;operations=select'
  gatehouse policy access create --file salaries.json --mode monitor`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b accessPolicyBody
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			if len(args) == 1 || f.name != "" || b.Name == "" {
				name, err := nameFrom(cmd, args, "name")
				if err != nil {
					return err
				}
				b.Name = name
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("access-policies"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printAccessPolicy(e, raw, "Access policy created.") })
		},
	}
	f.add(cmd)
	return cmd
}

func accessGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show an access management policy",
		Example: `  gatehouse policy access get salaries --output json > salaries.json`,
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
			raw, err := c.get(cmd.Context(), path("access-policies", name))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printAccessPolicy(e, raw, "") })
		},
	}
	cmd.Flags().String("name", "", "policy name")
	return cmd
}

func accessUpdateCmd(e *env) *cobra.Command {
	var f accessPolicyFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change an access management policy; --rule replaces all rules",
		Example: `  gatehouse policy access update salaries --mode enforce
  gatehouse policy access update salaries --file salaries.json`,
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
			raw, err := c.get(cmd.Context(), path("access-policies", name))
			if err != nil {
				return err
			}
			p, err := decode[gatehouse.AccessPolicy](raw)
			if err != nil {
				return err
			}
			b := accessPolicyBody{Name: p.Name, Repository: p.Repository, Mode: p.Mode, Rules: p.Rules}
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			b.Name = name
			raw, err = c.put(cmd.Context(), path("access-policies", name), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printAccessPolicy(e, raw, "Access policy updated.") })
		},
	}
	f.add(cmd)
	return cmd
}

func accessDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete an access management policy",
		Example: `  gatehouse policy access delete salaries`,
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
			raw, err := c.del(cmd.Context(), path("access-policies", name), false)
			if err != nil {
				return err
			}
			return e.done(raw, "Access policy %s deleted.", name)
		},
	}
	cmd.Flags().String("name", "", "policy name")
	return cmd
}

func accessListCmd(e *env) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List access management policies",
		Example: `  gatehouse policy access list --repository sales`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			p := path("access-policies")
			if repo != "" {
				p += "?repository=" + url.QueryEscape(repo)
			}
			raw, err := c.get(cmd.Context(), p)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				ps, err := decodeList[gatehouse.AccessPolicy](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, p := range ps {
					rows = append(rows, []string{p.Name, p.Repository, p.Mode, itoa(len(p.Rules))})
				}
				return table(e.Stdout, []string{"NAME", "REPOSITORY", "MODE", "RULES"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repository", "", "only the policies of this repository")
	return cmd
}

// policyTestResult mirrors the API's answer to POST /api/v1/access-policies/test.
type policyTestResult struct {
	Decision   string `json:"decision"`
	Statements []struct {
		Statement string   `json:"statement"`
		Kind      string   `json:"kind"`
		Objects   []string `json:"objects"`
		Decision  string   `json:"decision"`
		Enforced  bool     `json:"enforced"`
		Rule      string   `json:"rule"`
		Mode      string   `json:"mode"`
		Reason    string   `json:"reason"`
	} `json:"statements"`
}

func newPolicyTestCmd(e *env) *cobra.Command {
	var repo, user, schema string
	var groups []string
	var allowUnsupported bool
	cmd := &cobra.Command{
		Use:   "test --repository R --user U [--group G] SQL",
		Short: "Show what the access policies decide for a statement run by a user, and the rule that decides",
		Long: `Classify SQL as the sidecar does, resolve unqualified names in --schema (default public), and
evaluate the repository's access management policies for the user (with their groups in Gatehouse
and any --group). Exits 0 either way; the decision is printed.`,
		Example: `  gatehouse policy test --repository sales --user alice@example.com "SELECT salary FROM salaries"
  gatehouse policy test --repository sales --user bob@example.com --group contractors "DELETE FROM orders"`,
		Args: exactArgs(1, "SQL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repo == "" || user == "" {
				return usageErrorf("--repository and --user are required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("access-policies", "test"), map[string]any{
				"repository": repo, "user": user, "groups": groups, "sql": args[0], "schema": schema,
				"allow_unsupported_queries": allowUnsupported,
			})
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				res, err := decode[policyTestResult](raw)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Decision: %s\n\n", res.Decision)
				var rows [][]string
				for _, s := range res.Statements {
					d := s.Decision
					if s.Decision == "deny" && !s.Enforced {
						d = "deny (monitor: would be allowed to run)"
					}
					rows = append(rows, []string{s.Statement, s.Kind, strings.Join(s.Objects, ","), d, s.Rule, s.Reason})
				}
				return table(e.Stdout, []string{"STATEMENT", "KIND", "OBJECTS", "DECISION", "RULE", "REASON"}, rows)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&repo, "repository", "", "the repository whose policies to evaluate")
	fl.StringVar(&user, "user", "", "the IdP user running the statement")
	fl.StringArrayVar(&groups, "group", nil, "a group the user is in (repeatable), besides their groups in Gatehouse")
	fl.StringVar(&schema, "schema", "", "schema of unqualified names (default public)")
	fl.BoolVar(&allowUnsupported, "allow-unsupported-queries", false, "evaluate as a sidecar with allow_unsupported_queries on")
	return cmd
}
