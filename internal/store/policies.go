package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/gatehousedb/gatehouse"
)

const policyColumns = "name, display_name, repository, rules, created_at, updated_at"

func scanPolicy(sc scanner) (*gatehouse.ImpersonationPolicy, error) {
	var p gatehouse.ImpersonationPolicy
	var rules, created, updated string
	if err := sc.Scan(&p.Name, &p.DisplayName, &p.Repository, &rules, &created, &updated); err != nil {
		return nil, err
	}
	if err := fromJSON(rules, &p.Rules); err != nil {
		return nil, err
	}
	var err error
	if p.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if p.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &p, nil
}

// checkPolicyReferences makes sure the policy's repository and every repository user its rules name
// exist.
func (t *tx) checkPolicyReferences(ctx context.Context, p *gatehouse.ImpersonationPolicy) error {
	ok, err := t.exists(ctx, "SELECT 1 FROM repositories WHERE name = ?", p.Repository)
	if err != nil {
		return fmt.Errorf("check repository: %w", err)
	}
	if !ok {
		return gatehouse.Invalid("repository", "repository %q does not exist", p.Repository)
	}
	users, err := t.names(ctx, "SELECT username FROM repository_users WHERE repository = ?", p.Repository)
	if err != nil {
		return fmt.Errorf("list repository users: %w", err)
	}
	known := make(map[string]bool, len(users))
	for _, u := range users {
		known[u] = true
	}
	for i, r := range p.Rules {
		for _, u := range r.RepositoryUsers {
			if !known[u] {
				return gatehouse.Invalid("rules["+strconv.Itoa(i)+"].repository_users", "repository %q has no repository user %q", p.Repository, u)
			}
		}
	}
	return nil
}

// CreateImpersonationPolicy stores a new impersonation policy.
func (s *Store) CreateImpersonationPolicy(ctx context.Context, p *gatehouse.ImpersonationPolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	rules, err := toJSON(p.Rules)
	if err != nil {
		return err
	}
	now := s.stamp()
	err = s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM impersonation_policies WHERE name = ?", p.Name)
		if err != nil {
			return fmt.Errorf("check impersonation policy: %w", err)
		}
		if ok {
			return gatehouse.Conflict("impersonation policy %q already exists", p.Name)
		}
		if err := t.checkPolicyReferences(ctx, p); err != nil {
			return err
		}
		res, err := t.exec(ctx, "INSERT INTO impersonation_policies ("+policyColumns+") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			p.Name, p.DisplayName, p.Repository, rules, fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert impersonation policy: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("impersonation policy %q already exists", p.Name)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	p.CreatedAt, p.UpdatedAt = now, now
	return nil
}

// GetImpersonationPolicy returns the named policy.
func (s *Store) GetImpersonationPolicy(ctx context.Context, name string) (*gatehouse.ImpersonationPolicy, error) {
	p, err := scanPolicy(s.queryRow(ctx, "SELECT "+policyColumns+" FROM impersonation_policies WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("impersonation policy", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get impersonation policy: %w", err)
	}
	return p, nil
}

// UpdateImpersonationPolicy replaces the policy named p.Name (its repository may change).
func (s *Store) UpdateImpersonationPolicy(ctx context.Context, p *gatehouse.ImpersonationPolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	rules, err := toJSON(p.Rules)
	if err != nil {
		return err
	}
	now := s.stamp()
	var created string
	err = s.inTx(ctx, func(t *tx) error {
		err := t.queryRow(ctx, "SELECT created_at FROM impersonation_policies WHERE name = ?", p.Name).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return gatehouse.NotFound("impersonation policy", p.Name)
		}
		if err != nil {
			return fmt.Errorf("get impersonation policy: %w", err)
		}
		if err := t.checkPolicyReferences(ctx, p); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE impersonation_policies SET display_name = ?, repository = ?, rules = ?, updated_at = ? WHERE name = ?",
			p.DisplayName, p.Repository, rules, fmtTime(now), p.Name); err != nil {
			return fmt.Errorf("update impersonation policy: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	p.CreatedAt, _ = parseTime(created)
	p.UpdatedAt = now
	return nil
}

// DeleteImpersonationPolicy deletes the named policy.
func (s *Store) DeleteImpersonationPolicy(ctx context.Context, name string) error {
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "DELETE FROM impersonation_policies WHERE name = ?", name)
		if err != nil {
			return fmt.Errorf("delete impersonation policy: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("impersonation policy", name)
		}
		return t.bumpConfig(ctx)
	})
}

// ListImpersonationPolicies returns the policies of a repository ("" = all), ordered by name;
// NotFound if the repository does not exist.
func (s *Store) ListImpersonationPolicies(ctx context.Context, repository string) ([]gatehouse.ImpersonationPolicy, error) {
	var out []gatehouse.ImpersonationPolicy
	err := s.inReadTx(ctx, func(t *tx) error {
		var err error
		if repository == "" {
			out, err = t.policiesWhere(ctx, "1 = 1")
			return err
		}
		if _, err := t.getRepository(ctx, repository); err != nil {
			return err
		}
		out, err = t.policiesWhere(ctx, "repository = ?", repository)
		return err
	})
	return out, err
}

func (t *tx) policiesWhere(ctx context.Context, cond string, args ...any) ([]gatehouse.ImpersonationPolicy, error) {
	rows, err := t.query(ctx, "SELECT "+policyColumns+" FROM impersonation_policies WHERE "+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("list impersonation policies: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.ImpersonationPolicy{}
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return nil, fmt.Errorf("list impersonation policies: %w", err)
		}
		out = append(out, *p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list impersonation policies: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
