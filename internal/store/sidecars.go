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

const sidecarColumns = "id, display_name, hostname, public_key, second_public_key, allow_unsupported_queries, created_at, updated_at"

func scanSidecar(sc scanner) (*gatehouse.Sidecar, error) {
	var sc2 gatehouse.Sidecar
	var created, updated string
	if err := sc.Scan(&sc2.ID, &sc2.DisplayName, &sc2.Hostname, &sc2.PublicKey, &sc2.SecondPublicKey, &sc2.AllowUnsupportedQueries, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if sc2.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if sc2.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &sc2, nil
}

// CreateSidecar stores a new sidecar and assigns it a random ID.
func (s *Store) CreateSidecar(ctx context.Context, sc *gatehouse.Sidecar) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	id := newID()
	err := s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "INSERT INTO sidecars ("+sidecarColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			id, sc.DisplayName, sc.Hostname, sc.PublicKey, sc.SecondPublicKey, boolInt(sc.AllowUnsupportedQueries), fmtTime(now), fmtTime(now)); err != nil {
			return fmt.Errorf("insert sidecar: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	sc.ID, sc.CreatedAt, sc.UpdatedAt = id, now, now
	return nil
}

// GetSidecar returns the sidecar with the given ID.
func (s *Store) GetSidecar(ctx context.Context, id string) (*gatehouse.Sidecar, error) {
	sc, err := scanSidecar(s.queryRow(ctx, "SELECT "+sidecarColumns+" FROM sidecars WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("sidecar", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get sidecar: %w", err)
	}
	return sc, nil
}

func (t *tx) getSidecar(ctx context.Context, id string) (*gatehouse.Sidecar, error) {
	sc, err := scanSidecar(t.queryRow(ctx, "SELECT "+sidecarColumns+" FROM sidecars WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("sidecar", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get sidecar: %w", err)
	}
	return sc, nil
}

// UpdateSidecar replaces the sidecar with ID sc.ID.
func (s *Store) UpdateSidecar(ctx context.Context, sc *gatehouse.Sidecar) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	var old *gatehouse.Sidecar
	err := s.inTx(ctx, func(t *tx) error {
		var err error
		if old, err = t.getSidecar(ctx, sc.ID); err != nil {
			return err
		}
		if _, err := t.exec(ctx, "UPDATE sidecars SET display_name = ?, hostname = ?, public_key = ?, second_public_key = ?, allow_unsupported_queries = ?, updated_at = ? WHERE id = ?",
			sc.DisplayName, sc.Hostname, sc.PublicKey, sc.SecondPublicKey, boolInt(sc.AllowUnsupportedQueries), fmtTime(now), sc.ID); err != nil {
			return fmt.Errorf("update sidecar: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	sc.CreatedAt, sc.UpdatedAt = old.CreatedAt, now
	return nil
}

// DeleteSidecar deletes a sidecar and its instance records. Its listener ports and bindings block
// the delete unless cascade, which deletes them too.
func (s *Store) DeleteSidecar(ctx context.Context, id string, cascade bool) error {
	return s.inTx(ctx, func(t *tx) error {
		sc, err := t.getSidecar(ctx, id)
		if err != nil {
			return err
		}
		ports, err := t.listenerPorts(ctx, id)
		if err != nil {
			return err
		}
		bs, err := t.bindingsWhere(ctx, "b.sidecar_id = ?", id)
		if err != nil {
			return err
		}
		if !cascade && (len(ports) > 0 || len(bs) > 0) {
			var deps []string
			for _, p := range ports {
				deps = append(deps, fmt.Sprintf("listener port %d", p.Port))
			}
			for _, b := range bs {
				deps = append(deps, b.labelWithRepository())
			}
			return dependents(fmt.Sprintf("sidecar %q (%s)", sc.DisplayName, id), deps)
		}
		for _, stmt := range []string{
			"DELETE FROM bindings WHERE sidecar_id = ?",
			"DELETE FROM listener_ports WHERE sidecar_id = ?",
			"DELETE FROM sidecar_instances WHERE sidecar_id = ?",
			"DELETE FROM sidecars WHERE id = ?",
		} {
			if _, err := t.exec(ctx, stmt, id); err != nil {
				return fmt.Errorf("delete sidecar: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// ListSidecars returns every sidecar, ordered by display name (then ID).
func (s *Store) ListSidecars(ctx context.Context) ([]gatehouse.Sidecar, error) {
	rows, err := s.query(ctx, "SELECT "+sidecarColumns+" FROM sidecars")
	if err != nil {
		return nil, fmt.Errorf("list sidecars: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.Sidecar{}
	for rows.Next() {
		sc, err := scanSidecar(rows)
		if err != nil {
			return nil, fmt.Errorf("list sidecars: %w", err)
		}
		out = append(out, *sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sidecars: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DisplayName != out[j].DisplayName {
			return out[i].DisplayName < out[j].DisplayName
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Listener ports.

const listenerPortColumns = "sidecar_id, port, type, version, created_at"

func scanListenerPort(sc scanner) (*gatehouse.ListenerPort, error) {
	var p gatehouse.ListenerPort
	var created string
	if err := sc.Scan(&p.SidecarID, &p.Port, &p.Type, &p.Version, &created); err != nil {
		return nil, err
	}
	var err error
	if p.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	return &p, nil
}

func listenerPortNotFound(sidecarID string, port int) error {
	return gatehouse.NotFound("listener port", fmt.Sprintf("%s:%d", sidecarID, port))
}

// CreateListenerPort adds a listener port to a sidecar (Invalid "sidecar_id" if the sidecar does not
// exist); a Conflict if the sidecar already has the port.
func (s *Store) CreateListenerPort(ctx context.Context, p *gatehouse.ListenerPort) error {
	if err := p.Validate(); err != nil {
		return err
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM sidecars WHERE id = ?", p.SidecarID)
		if err != nil {
			return fmt.Errorf("check sidecar: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("sidecar_id", "sidecar %q does not exist", p.SidecarID)
		}
		res, err := t.exec(ctx, "INSERT INTO listener_ports ("+listenerPortColumns+") VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			p.SidecarID, p.Port, p.Type, p.Version, fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert listener port: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("listener port %d already exists on sidecar %q", p.Port, p.SidecarID)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	p.CreatedAt = now
	return nil
}

// GetListenerPort returns one listener port.
func (s *Store) GetListenerPort(ctx context.Context, sidecarID string, port int) (*gatehouse.ListenerPort, error) {
	p, err := scanListenerPort(s.queryRow(ctx, "SELECT "+listenerPortColumns+" FROM listener_ports WHERE sidecar_id = ? AND port = ?", sidecarID, port))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, listenerPortNotFound(sidecarID, port)
	}
	if err != nil {
		return nil, fmt.Errorf("get listener port: %w", err)
	}
	return p, nil
}

func (t *tx) getListenerPort(ctx context.Context, sidecarID string, port int) (*gatehouse.ListenerPort, error) {
	p, err := scanListenerPort(t.queryRow(ctx, "SELECT "+listenerPortColumns+" FROM listener_ports WHERE sidecar_id = ? AND port = ?", sidecarID, port))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, listenerPortNotFound(sidecarID, port)
	}
	if err != nil {
		return nil, fmt.Errorf("get listener port: %w", err)
	}
	return p, nil
}

// UpdateListenerPort changes the type and version a listener port presents; refused with a Conflict
// if a repository bound to it would no longer fit.
func (s *Store) UpdateListenerPort(ctx context.Context, p *gatehouse.ListenerPort) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var old *gatehouse.ListenerPort
	err := s.inTx(ctx, func(t *tx) error {
		var err error
		if old, err = t.getListenerPort(ctx, p.SidecarID, p.Port); err != nil {
			return err
		}
		bs, err := t.bindingsWhere(ctx, "b.sidecar_id = ? AND b.port = ?", p.SidecarID, p.Port)
		if err != nil {
			return err
		}
		var broken []string
		var rule string
		for _, b := range bs {
			repo, err := t.getRepository(ctx, b.Repository)
			if err != nil {
				return err
			}
			if err := gatehouse.CheckBinding(*p, *repo); err != nil {
				broken = append(broken, fmt.Sprintf("repository %q", b.Repository))
				rule = errMessage(err)
			}
		}
		if len(broken) > 0 {
			return gatehouse.Conflict("listener port %d is bound to %s, which would no longer fit: %s; change or delete the bindings first", p.Port, strings.Join(broken, ", "), rule)
		}
		if _, err := t.exec(ctx, "UPDATE listener_ports SET type = ?, version = ? WHERE sidecar_id = ? AND port = ?",
			p.Type, p.Version, p.SidecarID, p.Port); err != nil {
			return fmt.Errorf("update listener port: %w", err)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	p.CreatedAt = old.CreatedAt
	return nil
}

// DeleteListenerPort deletes a listener port; its bindings block the delete unless cascade.
func (s *Store) DeleteListenerPort(ctx context.Context, sidecarID string, port int, cascade bool) error {
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.getListenerPort(ctx, sidecarID, port); err != nil {
			return err
		}
		bs, err := t.bindingsWhere(ctx, "b.sidecar_id = ? AND b.port = ?", sidecarID, port)
		if err != nil {
			return err
		}
		if len(bs) > 0 && !cascade {
			var deps []string
			for _, b := range bs {
				deps = append(deps, b.labelWithRepository())
			}
			return dependents(fmt.Sprintf("listener port %d on sidecar %q", port, sidecarID), deps)
		}
		for _, stmt := range []string{
			"DELETE FROM bindings WHERE sidecar_id = ? AND port = ?",
			"DELETE FROM listener_ports WHERE sidecar_id = ? AND port = ?",
		} {
			if _, err := t.exec(ctx, stmt, sidecarID, port); err != nil {
				return fmt.Errorf("delete listener port: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// ListListenerPorts returns a sidecar's listener ports, ordered by port; NotFound if the sidecar
// does not exist.
func (s *Store) ListListenerPorts(ctx context.Context, sidecarID string) ([]gatehouse.ListenerPort, error) {
	var out []gatehouse.ListenerPort
	err := s.inReadTx(ctx, func(t *tx) error {
		if _, err := t.getSidecar(ctx, sidecarID); err != nil {
			return err
		}
		var err error
		out, err = t.listenerPorts(ctx, sidecarID)
		return err
	})
	return out, err
}

func (t *tx) listenerPorts(ctx context.Context, sidecarID string) ([]gatehouse.ListenerPort, error) {
	rows, err := t.query(ctx, "SELECT "+listenerPortColumns+" FROM listener_ports WHERE sidecar_id = ? ORDER BY port", sidecarID)
	if err != nil {
		return nil, fmt.Errorf("list listener ports: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.ListenerPort{}
	for rows.Next() {
		p, err := scanListenerPort(rows)
		if err != nil {
			return nil, fmt.Errorf("list listener ports: %w", err)
		}
		out = append(out, *p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list listener ports: %w", err)
	}
	return out, nil
}

// Bindings.

// boundPort is a binding with its listener port and the display name of its sidecar, for checks
// and messages.
type boundPort struct {
	gatehouse.Binding
	port        gatehouse.ListenerPort
	sidecarName string
}

func (b boundPort) label() string {
	return fmt.Sprintf("binding %s:%d", b.sidecarName, b.Port)
}

func (b boundPort) labelWithRepository() string {
	return fmt.Sprintf("binding %s:%d -> repository %q", b.sidecarName, b.Port, b.Repository)
}

// bindingsWhere returns the bindings matching cond (on alias b), ordered by sidecar, port and
// repository.
func (t *tx) bindingsWhere(ctx context.Context, cond string, args ...any) ([]boundPort, error) {
	rows, err := t.query(ctx, `SELECT b.sidecar_id, b.port, b.repository, b.created_at, p.type, p.version, p.created_at, s.display_name
		FROM bindings b
		JOIN listener_ports p ON p.sidecar_id = b.sidecar_id AND p.port = b.port
		JOIN sidecars s ON s.id = b.sidecar_id
		WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	defer rows.Close()
	var out []boundPort
	for rows.Next() {
		var b boundPort
		var created, portCreated string
		if err := rows.Scan(&b.SidecarID, &b.Port, &b.Repository, &created, &b.port.Type, &b.port.Version, &portCreated, &b.sidecarName); err != nil {
			return nil, fmt.Errorf("list bindings: %w", err)
		}
		if b.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		if b.port.CreatedAt, err = parseTime(portCreated); err != nil {
			return nil, err
		}
		b.port.SidecarID, b.port.Port = b.SidecarID, b.Port
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.SidecarID != y.SidecarID {
			return x.SidecarID < y.SidecarID
		}
		if x.Port != y.Port {
			return x.Port < y.Port
		}
		return x.Repository < y.Repository
	})
	return out, nil
}

// CreateBinding binds a listener port to a repository. Both must exist (Invalid "port" or
// "repository"), the port must be able to front the repository (gatehouse.CheckBinding), and the
// same binding must not exist (Conflict).
func (s *Store) CreateBinding(ctx context.Context, b *gatehouse.Binding) error {
	if b.SidecarID == "" {
		return gatehouse.Invalid("sidecar_id", "is required")
	}
	if err := gatehouse.ValidatePort("port", b.Port); err != nil {
		return err
	}
	if b.Repository == "" {
		return gatehouse.Invalid("repository", "is required")
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM sidecars WHERE id = ?", b.SidecarID)
		if err != nil {
			return fmt.Errorf("check sidecar: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("sidecar_id", "sidecar %q does not exist", b.SidecarID)
		}
		port, err := t.getListenerPort(ctx, b.SidecarID, b.Port)
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			return gatehouse.Invalid("port", "sidecar %q has no listener port %d", b.SidecarID, b.Port)
		}
		if err != nil {
			return err
		}
		repo, err := t.getRepository(ctx, b.Repository)
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			return gatehouse.Invalid("repository", "repository %q does not exist", b.Repository)
		}
		if err != nil {
			return err
		}
		if err := gatehouse.CheckBinding(*port, *repo); err != nil {
			return err
		}
		res, err := t.exec(ctx, "INSERT INTO bindings (sidecar_id, port, repository, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
			b.SidecarID, b.Port, b.Repository, fmtTime(now))
		if err != nil {
			return fmt.Errorf("insert binding: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("listener port %d on sidecar %q is already bound to repository %q", b.Port, b.SidecarID, b.Repository)
		}
		return t.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	b.CreatedAt = now
	return nil
}

// DeleteBinding removes one binding.
func (s *Store) DeleteBinding(ctx context.Context, sidecarID string, port int, repository string) error {
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "DELETE FROM bindings WHERE sidecar_id = ? AND port = ? AND repository = ?", sidecarID, port, repository)
		if err != nil {
			return fmt.Errorf("delete binding: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("binding", fmt.Sprintf("%s:%d -> %s", sidecarID, port, repository))
		}
		return t.bumpConfig(ctx)
	})
}

// ListBindings returns a sidecar's bindings ("" = every sidecar's), ordered by sidecar, port and
// repository; NotFound if the sidecar does not exist.
func (s *Store) ListBindings(ctx context.Context, sidecarID string) ([]gatehouse.Binding, error) {
	var bs []boundPort
	err := s.inReadTx(ctx, func(t *tx) error {
		var err error
		if sidecarID == "" {
			bs, err = t.bindingsWhere(ctx, "1 = 1")
			return err
		}
		if _, err := t.getSidecar(ctx, sidecarID); err != nil {
			return err
		}
		bs, err = t.bindingsWhere(ctx, "b.sidecar_id = ?", sidecarID)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]gatehouse.Binding, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Binding)
	}
	return out, nil
}
