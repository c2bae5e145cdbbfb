package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/gatehousedb/gatehouse"
)

const repositoryUserColumns = "repository, username, secret, created_at, updated_at"

func scanRepositoryUser(sc scanner) (*gatehouse.RepositoryUser, error) {
	var u gatehouse.RepositoryUser
	var secret, created, updated string
	if err := sc.Scan(&u.Repository, &u.Username, &secret, &created, &updated); err != nil {
		return nil, err
	}
	if err := fromJSON(secret, &u.Secret); err != nil {
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

func repositoryUserNotFound(repo, username string) error {
	return gatehouse.NotFound("repository user", repo+"/"+username)
}

// CreateRepositoryUser stores a repository user; the repository must exist (Invalid "repository").
func (s *Store) CreateRepositoryUser(ctx context.Context, u *gatehouse.RepositoryUser) error {
	if err := u.Validate(); err != nil {
		return err
	}
	secret, err := toJSON(u.Secret)
	if err != nil {
		return err
	}
	now := s.stamp()
	err = s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM repositories WHERE name = ?", u.Repository)
		if err != nil {
			return fmt.Errorf("check repository: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("repository", "repository %q does not exist", u.Repository)
		}
		res, err := t.exec(ctx, "INSERT INTO repository_users ("+repositoryUserColumns+") VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			u.Repository, u.Username, secret, fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert repository user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("repository user %q already exists on repository %q", u.Username, u.Repository)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	u.CreatedAt, u.UpdatedAt = now, now
	return nil
}

// GetRepositoryUser returns one repository user.
func (s *Store) GetRepositoryUser(ctx context.Context, repo, username string) (*gatehouse.RepositoryUser, error) {
	u, err := scanRepositoryUser(s.queryRow(ctx, "SELECT "+repositoryUserColumns+" FROM repository_users WHERE repository = ? AND username = ?", repo, username))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, repositoryUserNotFound(repo, username)
	}
	if err != nil {
		return nil, fmt.Errorf("get repository user: %w", err)
	}
	return u, nil
}

// UpdateRepositoryUser replaces the secret reference of an existing repository user.
func (s *Store) UpdateRepositoryUser(ctx context.Context, u *gatehouse.RepositoryUser) error {
	if err := u.Validate(); err != nil {
		return err
	}
	secret, err := toJSON(u.Secret)
	if err != nil {
		return err
	}
	now := s.stamp()
	var created string
	err = s.inTx(ctx, func(t *tx) error {
		err := t.queryRow(ctx, "SELECT created_at FROM repository_users WHERE repository = ? AND username = ?", u.Repository, u.Username).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return repositoryUserNotFound(u.Repository, u.Username)
		}
		if err != nil {
			return fmt.Errorf("get repository user: %w", err)
		}
		if _, err := t.exec(ctx, "UPDATE repository_users SET secret = ?, updated_at = ? WHERE repository = ? AND username = ?",
			secret, fmtTime(now), u.Repository, u.Username); err != nil {
			return fmt.Errorf("update repository user: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	u.CreatedAt, _ = parseTime(created)
	u.UpdatedAt = now
	return nil
}

// DeleteRepositoryUser deletes a repository user. Impersonation rules that name it block the delete
// unless cascade, which removes the name from those rules, drops rules left with no repository user,
// and deletes policies left with no rule.
func (s *Store) DeleteRepositoryUser(ctx context.Context, repo, username string, cascade bool) error {
	now := s.stamp()
	return s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM repository_users WHERE repository = ? AND username = ?", repo, username)
		if err != nil {
			return fmt.Errorf("get repository user: %w", err)
		}
		if !ok {
			return repositoryUserNotFound(repo, username)
		}
		policies, err := t.policiesWhere(ctx, "repository = ?", repo)
		if err != nil {
			return err
		}
		var naming []gatehouse.ImpersonationPolicy
		for _, p := range policies {
			if policyNames(p, username) {
				naming = append(naming, p)
			}
		}
		if len(naming) > 0 && !cascade {
			var deps []string
			for _, p := range naming {
				deps = append(deps, fmt.Sprintf("impersonation policy %q", p.Name))
			}
			return dependents(fmt.Sprintf("repository user %q on repository %q", username, repo), deps)
		}
		for _, p := range naming {
			var rules []gatehouse.ImpersonationRule
			for _, r := range p.Rules {
				r.RepositoryUsers = without(r.RepositoryUsers, username)
				if len(r.RepositoryUsers) > 0 {
					rules = append(rules, r)
				}
			}
			if len(rules) == 0 {
				if _, err := t.exec(ctx, "DELETE FROM impersonation_policies WHERE name = ?", p.Name); err != nil {
					return fmt.Errorf("delete impersonation policy: %w", err)
				}
				continue
			}
			js, err := toJSON(rules)
			if err != nil {
				return err
			}
			if _, err := t.exec(ctx, "UPDATE impersonation_policies SET rules = ?, updated_at = ? WHERE name = ?", js, fmtTime(now), p.Name); err != nil {
				return fmt.Errorf("update impersonation policy: %w", err)
			}
		}
		if _, err := t.exec(ctx, "DELETE FROM repository_users WHERE repository = ? AND username = ?", repo, username); err != nil {
			return fmt.Errorf("delete repository user: %w", err)
		}
		return t.bumpConfig(ctx)
	})
}

func policyNames(p gatehouse.ImpersonationPolicy, username string) bool {
	for _, r := range p.Rules {
		for _, u := range r.RepositoryUsers {
			if u == username {
				return true
			}
		}
	}
	return false
}

func without(list []string, v string) []string {
	var out []string
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// ListRepositoryUsers returns the users of a repository, ordered by username; NotFound if the
// repository does not exist.
func (s *Store) ListRepositoryUsers(ctx context.Context, repo string) ([]gatehouse.RepositoryUser, error) {
	var out []gatehouse.RepositoryUser
	err := s.inReadTx(ctx, func(t *tx) error {
		if _, err := t.getRepository(ctx, repo); err != nil {
			return err
		}
		rows, err := t.query(ctx, "SELECT "+repositoryUserColumns+" FROM repository_users WHERE repository = ?", repo)
		if err != nil {
			return fmt.Errorf("list repository users: %w", err)
		}
		defer rows.Close()
		out = []gatehouse.RepositoryUser{}
		for rows.Next() {
			u, err := scanRepositoryUser(rows)
			if err != nil {
				return fmt.Errorf("list repository users: %w", err)
			}
			out = append(out, *u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Username < out[j].Username })
	return out, nil
}
