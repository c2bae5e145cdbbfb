package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/gatehousedb/gatehouse"
)

const accessPolicyColumns = "name, repository, mode, rules, created_at, updated_at"

func scanAccessPolicy(sc scanner) (*gatehouse.AccessPolicy, error) {
	var p gatehouse.AccessPolicy
	var rules, created, updated string
	if err := sc.Scan(&p.Name, &p.Repository, &p.Mode, &rules, &created, &updated); err != nil {
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

func (t *tx) checkAccessRepository(ctx context.Context, repo string) error {
	ok, err := t.exists(ctx, "SELECT 1 FROM repositories WHERE name = ?", repo)
	if err != nil {
		return fmt.Errorf("check repository: %w", err)
	}
	if !ok {
		return gatehouse.Invalid("repository", "repository %q does not exist", repo)
	}
	return nil
}

// CreateAccessPolicy stores a new access management policy.
func (s *Store) CreateAccessPolicy(ctx context.Context, p *gatehouse.AccessPolicy) error {
	p.Normalize()
	if err := p.Validate(); err != nil {
		return err
	}
	rules, err := toJSON(p.Rules)
	if err != nil {
		return err
	}
	now := s.stamp()
	err = s.inTx(ctx, func(t *tx) error {
		if err := t.checkAccessRepository(ctx, p.Repository); err != nil {
			return err
		}
		res, err := t.exec(ctx, "INSERT INTO access_policies ("+accessPolicyColumns+") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			p.Name, p.Repository, p.Mode, rules, fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert access policy: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("access policy %q already exists", p.Name)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	p.CreatedAt, p.UpdatedAt = now, now
	return nil
}

// GetAccessPolicy returns the named access policy.
func (s *Store) GetAccessPolicy(ctx context.Context, name string) (*gatehouse.AccessPolicy, error) {
	p, err := scanAccessPolicy(s.queryRow(ctx, "SELECT "+accessPolicyColumns+" FROM access_policies WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("access policy", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get access policy: %w", err)
	}
	return p, nil
}

// UpdateAccessPolicy replaces the access policy named p.Name.
func (s *Store) UpdateAccessPolicy(ctx context.Context, p *gatehouse.AccessPolicy) error {
	p.Normalize()
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
		err := t.queryRow(ctx, "SELECT created_at FROM access_policies WHERE name = ?", p.Name).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return gatehouse.NotFound("access policy", p.Name)
		}
		if err != nil {
			return fmt.Errorf("get access policy: %w", err)
		}
		if err := t.checkAccessRepository(ctx, p.Repository); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE access_policies SET repository = ?, mode = ?, rules = ?, updated_at = ? WHERE name = ?",
			p.Repository, p.Mode, rules, fmtTime(now), p.Name); err != nil {
			return fmt.Errorf("update access policy: %w", err)
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

// DeleteAccessPolicy deletes the named access policy.
func (s *Store) DeleteAccessPolicy(ctx context.Context, name string) error {
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "DELETE FROM access_policies WHERE name = ?", name)
		if err != nil {
			return fmt.Errorf("delete access policy: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("access policy", name)
		}
		return t.bumpConfig(ctx)
	})
}

// ListAccessPolicies returns the access policies of a repository ("" = all), ordered by name.
func (s *Store) ListAccessPolicies(ctx context.Context, repository string) ([]gatehouse.AccessPolicy, error) {
	q := "SELECT " + accessPolicyColumns + " FROM access_policies"
	var args []any
	if repository != "" {
		q += " WHERE repository = ?"
		args = append(args, repository)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list access policies: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.AccessPolicy{}
	for rows.Next() {
		p, err := scanAccessPolicy(rows)
		if err != nil {
			return nil, fmt.Errorf("list access policies: %w", err)
		}
		out = append(out, *p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access policies: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
