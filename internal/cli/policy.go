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

// policyBody is what the API accepts for an impersonation policy.
type policyBody struct {
	Name        string                        `json:"name"`
	DisplayName string                        `json:"display_name,omitempty"`
	Repository  string                        `json:"repository"`
	Rules       []gatehouse.ImpersonationRule `json:"rules"`
}

// parseRule parses "users=a@x.com,b@x.com;groups=analysts;repository_users=admin_user".
func parseRule(s string) (gatehouse.ImpersonationRule, error) {
	var r gatehouse.ImpersonationRule
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return r, usageErrorf("--rule %q: %q is not key=value (keys: users, groups, repository_users)", s, part)
		}
		var vals []string
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				vals = append(vals, x)
			}
		}
		switch strings.ReplaceAll(strings.TrimSpace(k), "-", "_") {
		case "users", "user":
			r.Users = append(r.Users, vals...)
		case "groups", "group":
			r.Groups = append(r.Groups, vals...)
		case "repository_users", "repository_user":
			r.RepositoryUsers = append(r.RepositoryUsers, vals...)
		default:
			return r, usageErrorf("--rule %q: unknown key %q (keys: users, groups, repository_users)", s, k)
		}
	}
	return r, nil
}

// readPolicyFile decodes a policy JSON file strictly, so a typo in a field name is caught here.
func readPolicyFile(name string) (*policyBody, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usageErrorf("--file: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p policyBody
	if err := dec.Decode(&p); err != nil {
		return nil, usageErrorf("--file %s: %v (want {\"name\":..., \"repository\":..., \"rules\":[{\"users\":[...], \"groups\":[...], \"repository_users\":[...]}]})", name, err)
	}
	return &p, nil
}

type policyFlags struct {
	name, displayName, repository, file string
	rules                               []string
}

func (f *policyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "policy name: lowercase letters, digits, _ or -")
	fl.StringVar(&f.displayName, "display-name", "", "a friendly name for the policy")
	fl.StringVar(&f.repository, "repository", "", "the repository the policy grants access to")
	fl.StringArrayVar(&f.rules, "rule", nil, `a rule, repeatable: 'users=a@x.com,b@x.com;groups=analysts;repository_users=admin_user'`)
	fl.StringVar(&f.file, "file", "", "read the policy from a JSON file (flags override its fields)")
}

// apply overlays the file, then the flags, onto b.
func (f *policyFlags) apply(cmd *cobra.Command, b *policyBody) error {
	ch := cmd.Flags().Changed
	if f.file != "" {
		p, err := readPolicyFile(f.file)
		if err != nil {
			return err
		}
		if p.Name != "" {
			b.Name = p.Name
		}
		if p.DisplayName != "" {
			b.DisplayName = p.DisplayName
		}
		if p.Repository != "" {
			b.Repository = p.Repository
		}
		if p.Rules != nil {
			b.Rules = p.Rules
		}
	}
	if ch("display-name") {
		b.DisplayName = f.displayName
	}
	if ch("repository") {
		b.Repository = f.repository
	}
	if ch("rule") {
		if f.file != "" {
			return usageErrorf("give the rules with --rule or in --file, not both")
		}
		b.Rules = nil
		for _, s := range f.rules {
			r, err := parseRule(s)
			if err != nil {
				return err
			}
			b.Rules = append(b.Rules, r)
		}
	}
	return nil
}

func newPolicyCmd(e *env) *cobra.Command {
	imp := group("impersonation", "Manage impersonation policies: which IdP users and groups may connect as which repository users",
		policyCreateCmd(e), policyGetCmd(e), policyUpdateCmd(e), policyDeleteCmd(e), policyListCmd(e))
	return group("policy", "Manage policies", imp, newPolicyAccessCmd(e), newPolicyTestCmd(e))
}

func policyCreateCmd(e *env) *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create an impersonation policy",
		Long: `Create an impersonation policy on a repository. Each rule lets the listed IdP users, and every
member of the listed groups, connect as each listed repository user of that repository.`,
		Example: `  gatehouse policy impersonation create --name analysts --repository sales \
      --rule 'users=alice@example.com;groups=analysts;repository_users=admin_user'
  gatehouse policy impersonation create --file analysts.json`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b policyBody
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
			raw, err := c.post(cmd.Context(), path("impersonation-policies"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printPolicy(e, raw, "Impersonation policy created.") })
		},
	}
	f.add(cmd)
	return cmd
}

func printPolicy(e *env, raw []byte, title string) error {
	p, err := decode[gatehouse.ImpersonationPolicy](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	if err := fields(e.Stdout, "Name", p.Name, "Display name", p.DisplayName, "Repository", p.Repository,
		"Created", ts(p.CreatedAt), "Updated", ts(p.UpdatedAt)); err != nil {
		return err
	}
	var rows [][]string
	for i, r := range p.Rules {
		rows = append(rows, []string{itoa(i + 1), strings.Join(r.Users, ","), strings.Join(r.Groups, ","), strings.Join(r.RepositoryUsers, ",")})
	}
	fmt.Fprintln(e.Stdout)
	return table(e.Stdout, []string{"RULE", "USERS", "GROUPS", "REPOSITORY USERS"}, rows)
}

func policyGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show an impersonation policy",
		Example: `  gatehouse policy impersonation get analysts --output json > analysts.json`,
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
			raw, err := c.get(cmd.Context(), path("impersonation-policies", name))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printPolicy(e, raw, "") })
		},
	}
	cmd.Flags().String("name", "", "policy name")
	return cmd
}

func policyUpdateCmd(e *env) *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change an impersonation policy; --rule replaces all rules",
		Example: `  gatehouse policy impersonation update analysts --rule 'groups=analysts,finance;repository_users=admin_user'
  gatehouse policy impersonation update analysts --file analysts.json`,
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
			raw, err := c.get(cmd.Context(), path("impersonation-policies", name))
			if err != nil {
				return err
			}
			p, err := decode[gatehouse.ImpersonationPolicy](raw)
			if err != nil {
				return err
			}
			b := policyBody{Name: p.Name, DisplayName: p.DisplayName, Repository: p.Repository, Rules: p.Rules}
			if err := f.apply(cmd, &b); err != nil {
				return err
			}
			b.Name = name
			raw, err = c.put(cmd.Context(), path("impersonation-policies", name), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printPolicy(e, raw, "Impersonation policy updated.") })
		},
	}
	f.add(cmd)
	return cmd
}

func policyDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete an impersonation policy",
		Example: `  gatehouse policy impersonation delete analysts`,
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			cascade, _ := cmd.Flags().GetBool("cascade")
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.del(cmd.Context(), path("impersonation-policies", name), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Impersonation policy %s deleted.", name)
		},
	}
	cmd.Flags().String("name", "", "policy name")
	cmd.Flags().Bool("cascade", false, "accepted for symmetry; nothing depends on a policy")
	return cmd
}

func policyListCmd(e *env) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List impersonation policies",
		Example: `  gatehouse policy impersonation list --repository sales`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			p := path("impersonation-policies")
			if repo != "" {
				p += "?repository=" + url.QueryEscape(repo)
			}
			raw, err := c.get(cmd.Context(), p)
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				ps, err := decodeList[gatehouse.ImpersonationPolicy](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, p := range ps {
					if repo != "" && p.Repository != repo {
						continue
					}
					rows = append(rows, []string{p.Name, p.DisplayName, p.Repository, itoa(len(p.Rules))})
				}
				return table(e.Stdout, []string{"NAME", "DISPLAY NAME", "REPOSITORY", "RULES"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repository", "", "only the policies of this repository")
	return cmd
}
