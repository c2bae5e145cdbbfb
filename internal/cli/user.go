package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
)

// userBody is what the API accepts for a local user. Password is only sent when one is set.
type userBody struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	Email       string `json:"email,omitempty"`
	Role        string `json:"role"`
	Active      bool   `json:"active"`
	Password    string `json:"password,omitempty"`
}

type userFlags struct {
	displayName, email, role string
	active, passwordStdin    bool
}

func (f *userFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.displayName, "display-name", "", "the person's name")
	fl.StringVar(&f.email, "email", "", "e-mail address")
	fl.StringVar(&f.role, "role", "", "ADMIN or DATA_CONSUMER")
	fl.BoolVar(&f.active, "active", true, "whether the user may sign in")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read a password for local login from standard input")
}

func (f *userFlags) apply(e *env, cmd *cobra.Command, b *userBody) error {
	ch := cmd.Flags().Changed
	if ch("display-name") {
		b.DisplayName = f.displayName
	}
	if ch("email") {
		b.Email = f.email
	}
	if ch("role") {
		b.Role = strings.ToUpper(strings.ReplaceAll(f.role, "-", "_"))
	}
	if ch("active") {
		b.Active = f.active
	}
	if f.passwordStdin {
		pw, err := io.ReadAll(io.LimitReader(e.Stdin, 4096))
		if err != nil {
			return fmt.Errorf("read password from standard input: %w", err)
		}
		b.Password = strings.TrimRight(string(pw), "\r\n")
		if b.Password == "" {
			return usageErrorf("--password-stdin: the password is empty")
		}
	}
	return nil
}

func newUserCmd(e *env) *cobra.Command {
	cmd := group("user", "Manage Gatehouse users (local ones; SSO sign-in and SCIM create them too)",
		userCreateCmd(e), userGetCmd(e), userUpdateCmd(e), userDeleteCmd(e), userListCmd(e))
	cmd.Aliases = []string{"users"}
	return cmd
}

func printUser(e *env, raw []byte, title string) error {
	u, err := decode[gatehouse.User](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	return fields(e.Stdout, "Name", u.Name, "Display name", u.DisplayName, "E-mail", u.Email, "Role", string(u.Role),
		"Active", yesNo(u.Active), "Groups", strings.Join(u.Groups, ", "), "Created", ts(u.CreatedAt), "Updated", ts(u.UpdatedAt))
}

func userCreateCmd(e *env) *cobra.Command {
	var f userFlags
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user",
		Example: `  printf '%s\n' "$PASSWORD" | gatehouse user create alice@example.com --role DATA_CONSUMER --password-stdin
  gatehouse user create bob@example.com --role ADMIN --display-name "Bob Smith" --email bob@example.com`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			b := userBody{Name: name, Role: string(gatehouse.RoleDataConsumer), Active: true}
			if err := f.apply(e, cmd, &b); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("users"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printUser(e, raw, "User created.") })
		},
	}
	cmd.Flags().String("name", "", "user name, usually the IdP user name (an e-mail address)")
	f.add(cmd)
	return cmd
}

func userGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a user",
		Example: `  gatehouse user get alice@example.com`,
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
			raw, err := c.get(cmd.Context(), path("users", name))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printUser(e, raw, "") })
		},
	}
	cmd.Flags().String("name", "", "user name")
	return cmd
}

func userUpdateCmd(e *env) *cobra.Command {
	var f userFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a user; fields without a flag keep their value",
		Example: `  gatehouse user update alice@example.com --role ADMIN
  gatehouse user update alice@example.com --active=false
  printf '%s\n' "$NEW_PASSWORD" | gatehouse user update alice@example.com --password-stdin`,
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
			raw, err := c.get(cmd.Context(), path("users", name))
			if err != nil {
				return err
			}
			u, err := decode[gatehouse.User](raw)
			if err != nil {
				return err
			}
			b := userBody{Name: u.Name, DisplayName: u.DisplayName, Email: u.Email, Role: string(u.Role), Active: u.Active}
			if err := f.apply(e, cmd, &b); err != nil {
				return err
			}
			raw, err = c.put(cmd.Context(), path("users", name), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printUser(e, raw, "User updated.") })
		},
	}
	cmd.Flags().String("name", "", "user name")
	f.add(cmd)
	return cmd
}

func userDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a user, revoking their access tokens",
		Example: `  gatehouse user delete alice@example.com`,
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
			raw, err := c.del(cmd.Context(), path("users", name), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "User %s deleted.", name)
		},
	}
	cmd.Flags().String("name", "", "user name")
	cmd.Flags().Bool("cascade", false, "accepted for symmetry; a user's tokens and sessions always go with them")
	return cmd
}

func userListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List users",
		Example: `  gatehouse user list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("users"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				us, err := decodeList[gatehouse.User](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, u := range us {
					rows = append(rows, []string{u.Name, string(u.Role), yesNo(u.Active), strings.Join(u.Groups, ",")})
				}
				return table(e.Stdout, []string{"NAME", "ROLE", "ACTIVE", "GROUPS"}, rows)
			})
		},
	}
}

// Groups.

type groupBody struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"display_name,omitempty"`
	Role        string   `json:"role,omitempty"`
	Members     []string `json:"members"`
}

type groupFlags struct {
	displayName, role             string
	members, addMember, rmMembers []string
}

func (f *groupFlags) add(cmd *cobra.Command, update bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.displayName, "display-name", "", "a friendly name")
	fl.StringVar(&f.role, "role", "", "optional role members get: ADMIN or DATA_CONSUMER")
	fl.StringArrayVar(&f.members, "member", nil, "a member's user name, repeatable (on update: replaces all members)")
	if update {
		fl.StringArrayVar(&f.addMember, "add-member", nil, "add a member, repeatable")
		fl.StringArrayVar(&f.rmMembers, "remove-member", nil, "remove a member, repeatable")
	}
}

func (f *groupFlags) apply(cmd *cobra.Command, b *groupBody) {
	ch := cmd.Flags().Changed
	if ch("display-name") {
		b.DisplayName = f.displayName
	}
	if ch("role") {
		b.Role = strings.ToUpper(strings.ReplaceAll(f.role, "-", "_"))
	}
	if ch("member") {
		b.Members = f.members
	}
	for _, m := range f.addMember {
		if !slices.Contains(b.Members, m) {
			b.Members = append(b.Members, m)
		}
	}
	b.Members = slices.DeleteFunc(b.Members, func(m string) bool { return slices.Contains(f.rmMembers, m) })
	if b.Members == nil {
		b.Members = []string{}
	}
}

func newGroupCmd(e *env) *cobra.Command {
	cmd := group("group", "Manage groups of users (named as in the IdP)",
		groupCreateCmd(e), groupGetCmd(e), groupUpdateCmd(e), groupDeleteCmd(e), groupListCmd(e))
	cmd.Aliases = []string{"groups"}
	return cmd
}

func printGroup(e *env, raw []byte, title string) error {
	g, err := decode[gatehouse.Group](raw)
	if err != nil {
		return err
	}
	if title != "" {
		fmt.Fprintln(e.Stdout, title)
	}
	return fields(e.Stdout, "Name", g.Name, "Display name", g.DisplayName, "Role", string(g.Role),
		"Members", strings.Join(g.Members, ", "), "Created", ts(g.CreatedAt), "Updated", ts(g.UpdatedAt))
}

func groupCreateCmd(e *env) *cobra.Command {
	var f groupFlags
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a group",
		Example: `  gatehouse group create analysts --member alice@example.com --member carol@example.com`,
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameFrom(cmd, args, "name")
			if err != nil {
				return err
			}
			b := groupBody{Name: name}
			f.apply(cmd, &b)
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.post(cmd.Context(), path("groups"), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printGroup(e, raw, "Group created.") })
		},
	}
	cmd.Flags().String("name", "", "group name, as in the IdP")
	f.add(cmd, false)
	return cmd
}

func groupGetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAME",
		Short:   "Show a group",
		Example: `  gatehouse group get analysts`,
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
			raw, err := c.get(cmd.Context(), path("groups", name))
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printGroup(e, raw, "") })
		},
	}
	cmd.Flags().String("name", "", "group name")
	return cmd
}

func groupUpdateCmd(e *env) *cobra.Command {
	var f groupFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a group; --member replaces the members, --add-member/--remove-member edit them",
		Example: `  gatehouse group update analysts --add-member dave@example.com
  gatehouse group update analysts --member alice@example.com`,
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
			raw, err := c.get(cmd.Context(), path("groups", name))
			if err != nil {
				return err
			}
			g, err := decode[gatehouse.Group](raw)
			if err != nil {
				return err
			}
			b := groupBody{Name: g.Name, DisplayName: g.DisplayName, Role: string(g.Role), Members: g.Members}
			f.apply(cmd, &b)
			raw, err = c.put(cmd.Context(), path("groups", name), b)
			if err != nil {
				return err
			}
			return e.show(raw, func() error { return printGroup(e, raw, "Group updated.") })
		},
	}
	cmd.Flags().String("name", "", "group name")
	f.add(cmd, true)
	return cmd
}

func groupDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a group",
		Example: `  gatehouse group delete analysts`,
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
			raw, err := c.del(cmd.Context(), path("groups", name), cascade)
			if err != nil {
				return err
			}
			return e.done(raw, "Group %s deleted.", name)
		},
	}
	cmd.Flags().String("name", "", "group name")
	cmd.Flags().Bool("cascade", false, "accepted for symmetry; memberships always go with the group")
	return cmd
}

func groupListCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List groups",
		Example: `  gatehouse group list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("groups"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				gs, err := decodeList[gatehouse.Group](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, g := range gs {
					rows = append(rows, []string{g.Name, string(g.Role), strings.Join(g.Members, ",")})
				}
				return table(e.Stdout, []string{"NAME", "ROLE", "MEMBERS"}, rows)
			})
		},
	}
}
