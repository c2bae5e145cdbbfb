package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

const repositoryColumns = "name, type, version, hostname, port, database_name, tls_mode, ca_bundle, record_parameters, created_at, updated_at"

func scanRepository(sc scanner) (*gatehouse.Repository, error) {
	var r gatehouse.Repository
	var created, updated string
	var recordParams int
	if err := sc.Scan(&r.Name, &r.Type, &r.Version, &r.Hostname, &r.Port, &r.Database, &r.TLSMode, &r.CABundle, &recordParams, &created, &updated); err != nil {
		return nil, err
	}
	r.RecordParameters = recordParams != 0
	var err error
	if r.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if r.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateRepository stores a new repository and sets its timestamps.
func (s *Store) CreateRepository(ctx context.Context, r *gatehouse.Repository) error {
	if err := r.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "INSERT INTO repositories ("+repositoryColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			r.Name, r.Type, r.Version, r.Hostname, r.Port, r.Database, r.TLSMode, r.CABundle, boolInt(r.RecordParameters), fmtTime(now), fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert repository: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("repository %q already exists", r.Name)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	r.CreatedAt, r.UpdatedAt = now, now
	return nil
}

// GetRepository returns the named repository.
func (s *Store) GetRepository(ctx context.Context, name string) (*gatehouse.Repository, error) {
	r, err := scanRepository(s.queryRow(ctx, "SELECT "+repositoryColumns+" FROM repositories WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("repository", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get repository: %w", err)
	}
	return r, nil
}

func (t *tx) getRepository(ctx context.Context, name string) (*gatehouse.Repository, error) {
	r, err := scanRepository(t.queryRow(ctx, "SELECT "+repositoryColumns+" FROM repositories WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("repository", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get repository: %w", err)
	}
	return r, nil
}

// UpdateRepository replaces the repository named r.Name. A change of type or version that a
// binding's listener port cannot present is refused with a Conflict naming the bindings.
func (s *Store) UpdateRepository(ctx context.Context, r *gatehouse.Repository) error {
	if err := r.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	var created string
	err := s.inTx(ctx, func(t *tx) error {
		old, err := t.getRepository(ctx, r.Name)
		if err != nil {
			return err
		}
		if old.Type != r.Type || old.Version != r.Version {
			bs, err := t.bindingsWhere(ctx, "b.repository = ?", r.Name)
			if err != nil {
				return err
			}
			var broken []string
			var rule string
			for _, b := range bs {
				if err := gatehouse.CheckBinding(b.port, *r); err != nil {
					broken = append(broken, fmt.Sprintf("%s:%d", b.sidecarName, b.Port))
					rule = errMessage(err)
				}
			}
			if len(broken) > 0 {
				return gatehouse.Conflict("repository %q is bound to listener port %s, which would no longer fit: %s; change or delete the bindings first", r.Name, strings.Join(broken, ", "), rule)
			}
		}
		created = fmtTime(old.CreatedAt)
		if _, err := t.exec(ctx, "UPDATE repositories SET type = ?, version = ?, hostname = ?, port = ?, database_name = ?, tls_mode = ?, ca_bundle = ?, record_parameters = ?, updated_at = ? WHERE name = ?",
			r.Type, r.Version, r.Hostname, r.Port, r.Database, r.TLSMode, r.CABundle, boolInt(r.RecordParameters), fmtTime(now), r.Name); err != nil {
			return fmt.Errorf("update repository: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	r.CreatedAt, _ = parseTime(created)
	r.UpdatedAt = now
	return nil
}

// DeleteRepository deletes a repository and its repository users. Bindings and impersonation
// policies that name it block the delete (a Conflict listing them) unless cascade, which deletes
// them too.
func (s *Store) DeleteRepository(ctx context.Context, name string, cascade bool) error {
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.getRepository(ctx, name); err != nil {
			return err
		}
		bs, err := t.bindingsWhere(ctx, "b.repository = ?", name)
		if err != nil {
			return err
		}
		policies, err := t.names(ctx, "SELECT name FROM impersonation_policies WHERE repository = ?", name)
		if err != nil {
			return fmt.Errorf("list impersonation policies: %w", err)
		}
		access, err := t.names(ctx, "SELECT name FROM access_policies WHERE repository = ?", name)
		if err != nil {
			return fmt.Errorf("list access policies: %w", err)
		}
		if !cascade && (len(bs) > 0 || len(policies) > 0 || len(access) > 0) {
			var deps []string
			for _, b := range bs {
				deps = append(deps, b.label())
			}
			for _, p := range policies {
				deps = append(deps, fmt.Sprintf("impersonation policy %q", p))
			}
			for _, p := range access {
				deps = append(deps, fmt.Sprintf("access policy %q", p))
			}
			return dependents(fmt.Sprintf("repository %q", name), deps)
		}
		for _, stmt := range []string{
			"DELETE FROM bindings WHERE repository = ?",
			"DELETE FROM impersonation_policies WHERE repository = ?",
			"DELETE FROM access_policies WHERE repository = ?",
			"DELETE FROM repository_users WHERE repository = ?",
			"DELETE FROM repositories WHERE name = ?",
		} {
			if _, err := t.exec(ctx, stmt, name); err != nil {
				return fmt.Errorf("delete repository: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// ListRepositories returns every repository, ordered by name.
func (s *Store) ListRepositories(ctx context.Context) ([]gatehouse.Repository, error) {
	rows, err := s.query(ctx, "SELECT "+repositoryColumns+" FROM repositories")
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.Repository{}
	for rows.Next() {
		r, err := scanRepository(rows)
		if err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// names returns the first column of every row, sorted.
func (t *tx) names(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

// errMessage returns the message of a *gatehouse.Error (without its field), or err's text.
func errMessage(err error) string {
	var e *gatehouse.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}
