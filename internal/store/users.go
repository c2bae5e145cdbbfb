package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/gatehousedb/gatehouse"
)

const userColumns = "name, display_name, email, role, active, created_at, updated_at"

func scanUser(sc scanner) (*gatehouse.User, error) {
	var u gatehouse.User
	var created, updated string
	if err := sc.Scan(&u.Name, &u.DisplayName, &u.Email, &u.Role, &u.Active, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if u.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if u.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &u, nil
}

// memberships returns user name -> sorted group names, for one user or (user "") everyone.
func (t *tx) memberships(ctx context.Context, user string) (map[string][]string, error) {
	query, args := "SELECT user_name, group_name FROM group_members", []any{}
	if user != "" {
		query, args = query+" WHERE user_name = ?", []any{user}
	}
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list group memberships: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var u, g string
		if err := rows.Scan(&u, &g); err != nil {
			return nil, fmt.Errorf("list group memberships: %w", err)
		}
		out[u] = append(out[u], g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list group memberships: %w", err)
	}
	for _, gs := range out {
		sort.Strings(gs)
	}
	return out, nil
}

// CreateUser stores a new user. u.Groups is ignored: memberships are set on groups.
func (s *Store) CreateUser(ctx context.Context, u *gatehouse.User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "INSERT INTO users ("+userColumns+", password_hash) VALUES (?, ?, ?, ?, ?, ?, ?, '') ON CONFLICT DO NOTHING",
			u.Name, u.DisplayName, u.Email, u.Role, boolInt(u.Active), fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("user %q already exists", u.Name)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	u.Groups = nil
	u.CreatedAt, u.UpdatedAt = now, now
	return nil
}

// GetUser returns the named user with their groups.
func (s *Store) GetUser(ctx context.Context, name string) (*gatehouse.User, error) {
	var u *gatehouse.User
	err := s.inReadTx(ctx, func(t *tx) error {
		var err error
		if u, err = t.getUser(ctx, name); err != nil {
			return err
		}
		m, err := t.memberships(ctx, name)
		u.Groups = m[name]
		return err
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (t *tx) getUser(ctx context.Context, name string) (*gatehouse.User, error) {
	u, err := scanUser(t.queryRow(ctx, "SELECT "+userColumns+" FROM users WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("user", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// UpdateUser replaces the named user's fields (not their groups or password).
func (s *Store) UpdateUser(ctx context.Context, u *gatehouse.User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	var old *gatehouse.User
	var groups []string
	err := s.inTx(ctx, func(t *tx) error {
		var err error
		if old, err = t.getUser(ctx, u.Name); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE users SET display_name = ?, email = ?, role = ?, active = ?, updated_at = ? WHERE name = ?",
			u.DisplayName, u.Email, u.Role, boolInt(u.Active), fmtTime(now), u.Name); err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		m, err := t.memberships(ctx, u.Name)
		if err != nil {
			return err
		}
		groups = m[u.Name]
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	u.Groups = groups
	u.CreatedAt, u.UpdatedAt = old.CreatedAt, now
	return nil
}

// DeleteUser deletes a user, removes them from their groups, revokes their access tokens (which
// are kept, revoked, for the audit trail) and ends their API sessions.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	now := fmtTime(s.stamp())
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.getUser(ctx, name); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE access_tokens SET revoked_at = ? WHERE owner = ? AND revoked_at IS NULL", now, name); err != nil {
			return fmt.Errorf("revoke tokens: %w", err)
		}
		for _, stmt := range []string{
			"DELETE FROM login_sessions WHERE user_name = ?",
			"DELETE FROM group_members WHERE user_name = ?",
			"DELETE FROM users WHERE name = ?",
		} {
			if _, err := t.exec(ctx, stmt, name); err != nil {
				return fmt.Errorf("delete user: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// ListUsers returns every user with their groups, ordered by name.
func (s *Store) ListUsers(ctx context.Context) ([]gatehouse.User, error) {
	out := []gatehouse.User{}
	err := s.inReadTx(ctx, func(t *tx) error {
		rows, err := t.query(ctx, "SELECT "+userColumns+" FROM users")
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return fmt.Errorf("list users: %w", err)
			}
			out = append(out, *u)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		rows.Close()
		m, err := t.memberships(ctx, "")
		if err != nil {
			return err
		}
		for i := range out {
			out[i].Groups = m[out[i].Name]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SetUserPassword sets the bcrypt hash of a user's password; "" disables password login.
func (s *Store) SetUserPassword(ctx context.Context, name, passwordHash string) error {
	now := fmtTime(s.stamp())
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?", passwordHash, now, name)
		if err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("user", name)
		}
		return t.bumpConfig(ctx)
	})
}

// UserPasswordHash returns the user's password hash ("" when password login is disabled).
func (s *Store) UserPasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := s.queryRow(ctx, "SELECT password_hash FROM users WHERE name = ?", name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", gatehouse.NotFound("user", name)
	}
	if err != nil {
		return "", fmt.Errorf("get password hash: %w", err)
	}
	return h, nil
}

// Groups.

const groupColumns = "name, display_name, role, created_at, updated_at"

func scanGroup(sc scanner) (*gatehouse.Group, error) {
	var g gatehouse.Group
	var created, updated string
	if err := sc.Scan(&g.Name, &g.DisplayName, &g.Role, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if g.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if g.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &g, nil
}

// setMembers replaces a group's members after checking that each is a user (Invalid "members").
// It returns the members as stored: sorted, without duplicates.
func (t *tx) setMembers(ctx context.Context, group string, members []string) ([]string, error) {
	seen := map[string]bool{}
	out := []string{}
	for _, m := range members {
		if seen[m] {
			continue
		}
		seen[m] = true
		ok, err := t.exists(ctx, "SELECT 1 FROM users WHERE name = ?", m)
		if err != nil {
			return nil, fmt.Errorf("check user: %w", err)
		}
		if !ok {
			return nil, gatehouse.Invalid("members", "user %q does not exist", m)
		}
		out = append(out, m)
	}
	if _, err := t.exec(ctx, "DELETE FROM group_members WHERE group_name = ?", group); err != nil {
		return nil, fmt.Errorf("replace group members: %w", err)
	}
	for _, m := range out {
		if _, err := t.exec(ctx, "INSERT INTO group_members (group_name, user_name) VALUES (?, ?)", group, m); err != nil {
			return nil, fmt.Errorf("add group member: %w", err)
		}
	}
	sort.Strings(out)
	return out, nil
}

// CreateGroup stores a new group with its members, who must be existing users.
func (s *Store) CreateGroup(ctx context.Context, g *gatehouse.Group) error {
	if err := g.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	var members []string
	err := s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "INSERT INTO user_groups ("+groupColumns+") VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			g.Name, g.DisplayName, g.Role, fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert group: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("group %q already exists", g.Name)
		}
		if members, err = t.setMembers(ctx, g.Name, g.Members); err != nil {
			return err
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	g.Members = members
	g.CreatedAt, g.UpdatedAt = now, now
	return nil
}

// GetGroup returns the named group with its members, sorted.
func (s *Store) GetGroup(ctx context.Context, name string) (*gatehouse.Group, error) {
	var g *gatehouse.Group
	err := s.inReadTx(ctx, func(t *tx) error {
		var err error
		g, err = t.getGroup(ctx, name)
		return err
	})
	return g, err
}

func (t *tx) getGroup(ctx context.Context, name string) (*gatehouse.Group, error) {
	g, err := scanGroup(t.queryRow(ctx, "SELECT "+groupColumns+" FROM user_groups WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("group", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get group: %w", err)
	}
	if g.Members, err = t.names(ctx, "SELECT user_name FROM group_members WHERE group_name = ?", name); err != nil {
		return nil, fmt.Errorf("list group members: %w", err)
	}
	if g.Members == nil {
		g.Members = []string{}
	}
	return g, nil
}

// UpdateGroup replaces the named group's fields and members.
func (s *Store) UpdateGroup(ctx context.Context, g *gatehouse.Group) error {
	if err := g.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	var old *gatehouse.Group
	var members []string
	err := s.inTx(ctx, func(t *tx) error {
		var err error
		if old, err = t.getGroup(ctx, g.Name); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE user_groups SET display_name = ?, role = ?, updated_at = ? WHERE name = ?",
			g.DisplayName, g.Role, fmtTime(now), g.Name); err != nil {
			return fmt.Errorf("update group: %w", err)
		}
		if members, err = t.setMembers(ctx, g.Name, g.Members); err != nil {
			return err
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	g.Members = members
	g.CreatedAt, g.UpdatedAt = old.CreatedAt, now
	return nil
}

// DeleteGroup deletes the named group and its memberships. Impersonation rules naming the group are
// left alone: they name IdP groups, which may come back.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "DELETE FROM group_members WHERE group_name = ?", name); err != nil {
			return fmt.Errorf("delete group members: %w", err)
		}
		res, err := t.exec(ctx, "DELETE FROM user_groups WHERE name = ?", name)
		if err != nil {
			return fmt.Errorf("delete group: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("group", name)
		}
		return t.bumpConfig(ctx)
	})
}

// ListGroups returns every group with its members, ordered by name.
func (s *Store) ListGroups(ctx context.Context) ([]gatehouse.Group, error) {
	out := []gatehouse.Group{}
	err := s.inReadTx(ctx, func(t *tx) error {
		rows, err := t.query(ctx, "SELECT "+groupColumns+" FROM user_groups")
		if err != nil {
			return fmt.Errorf("list groups: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			g, err := scanGroup(rows)
			if err != nil {
				return fmt.Errorf("list groups: %w", err)
			}
			g.Members = []string{}
			out = append(out, *g)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list groups: %w", err)
		}
		rows.Close()
		m, err := t.memberships(ctx, "")
		if err != nil {
			return err
		}
		index := map[string]int{}
		for i := range out {
			index[out[i].Name] = i
		}
		for user, groups := range m {
			for _, g := range groups {
				if i, ok := index[g]; ok {
					out[i].Members = append(out[i].Members, user)
				}
			}
		}
		for i := range out {
			sort.Strings(out[i].Members)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Login sessions.

// CreateSession stores an API session for an existing user (Invalid "user" otherwise).
func (s *Store) CreateSession(ctx context.Context, ls *gatehouse.LoginSession) error {
	if ls.Hash == "" {
		return gatehouse.Invalid("hash", "is required")
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM users WHERE name = ?", ls.User)
		if err != nil {
			return fmt.Errorf("check user: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("user", "user %q does not exist", ls.User)
		}
		res, err := t.exec(ctx, "INSERT INTO login_sessions (hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
			ls.Hash, ls.User, fmtTime(now), fmtTime(ls.ExpiresAt))
		if err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("session already exists")
		}
		return nil
	})
	if err != nil {
		return err
	}
	ls.CreatedAt = now
	return nil
}

// SessionByHash returns the session with the given hash; NotFound when there is none or it expired.
func (s *Store) SessionByHash(ctx context.Context, hash string) (*gatehouse.LoginSession, error) {
	ls := gatehouse.LoginSession{Hash: hash}
	var created, expires string
	err := s.queryRow(ctx, "SELECT user_name, created_at, expires_at FROM login_sessions WHERE hash = ? AND expires_at > ?",
		hash, fmtTime(s.now())).Scan(&ls.User, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.Errorf(gatehouse.ECodeNotFound, "session not found or expired")
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	if ls.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if ls.ExpiresAt, err = parseTime(expires); err != nil {
		return nil, err
	}
	return &ls, nil
}

// DeleteSession ends a session; deleting one that does not exist is not an error (logging out
// twice is fine). Expired sessions are purged as it goes.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "DELETE FROM login_sessions WHERE hash = ? OR expires_at <= ?", hash, fmtTime(s.now())); err != nil {
			return fmt.Errorf("delete session: %w", err)
		}
		return nil
	})
}
