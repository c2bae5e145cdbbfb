package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// CreateSSOGrant stores a pending single sign-on step by the hash of its secret. Expired grants are
// purged as it goes.
func (s *Store) CreateSSOGrant(ctx context.Context, g *gatehouse.SSOGrant) error {
	if g.Hash == "" || g.Kind == "" {
		return gatehouse.Invalid("hash", "a grant needs a hash and a kind")
	}
	now := s.stamp()
	err := s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "DELETE FROM sso_grants WHERE expires_at <= ?", fmtTime(now)); err != nil {
			return fmt.Errorf("purge sso grants: %w", err)
		}
		res, err := t.exec(ctx, "INSERT INTO sso_grants (hash, kind, user_name, session_hash, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			g.Hash, g.Kind, g.User, g.SessionHash, g.Data, fmtTime(now), fmtTime(g.ExpiresAt))
		if err != nil {
			return fmt.Errorf("insert sso grant: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("grant already exists")
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.CreatedAt = now
	return nil
}

// ConsumeSSOGrant returns the unexpired grant of kind with hash and deletes it, so that each grant
// is used at most once even when two requests race: NotFound when it is absent, expired or used.
func (s *Store) ConsumeSSOGrant(ctx context.Context, kind, hash string) (*gatehouse.SSOGrant, error) {
	g := gatehouse.SSOGrant{Hash: hash, Kind: kind}
	now := fmtTime(s.now())
	err := s.inTx(ctx, func(t *tx) error {
		var created, expires string
		err := t.queryRow(ctx, "SELECT user_name, session_hash, data, created_at, expires_at FROM sso_grants WHERE hash = ? AND kind = ? AND expires_at > ?",
			hash, kind, now).Scan(&g.User, &g.SessionHash, &g.Data, &created, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return gatehouse.Errorf(gatehouse.ECodeNotFound, "grant not found, expired or already used")
		}
		if err != nil {
			return fmt.Errorf("get sso grant: %w", err)
		}
		if g.CreatedAt, err = parseTime(created); err != nil {
			return err
		}
		if g.ExpiresAt, err = parseTime(expires); err != nil {
			return err
		}
		res, err := t.exec(ctx, "DELETE FROM sso_grants WHERE hash = ?", hash)
		if err != nil {
			return fmt.Errorf("consume sso grant: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Errorf(gatehouse.ECodeNotFound, "grant not found, expired or already used")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &g, nil
}

// DeleteSessionGrants deletes the refresh tokens that renew the login session with sessionHash.
func (s *Store) DeleteSessionGrants(ctx context.Context, sessionHash string) error {
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "DELETE FROM sso_grants WHERE session_hash = ?", sessionHash); err != nil {
			return fmt.Errorf("delete session grants: %w", err)
		}
		return nil
	})
}

// RevokeUserAccess ends everything a user holds: it revokes their access tokens (sidecars drop them
// at the next sync), ends their API sessions and deletes their refresh tokens and one-time codes.
func (s *Store) RevokeUserAccess(ctx context.Context, name string) error {
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
			"DELETE FROM sso_grants WHERE user_name = ?",
		} {
			if _, err := t.exec(ctx, stmt, name); err != nil {
				return fmt.Errorf("end sessions: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// SetUserGroups makes the user's group memberships exactly groups, creating groups that do not
// exist yet (with no role). It changes nothing, and keeps the config version, when they already are.
func (s *Store) SetUserGroups(ctx context.Context, user string, groups []string) error {
	want := slices.Compact(slices.Sorted(slices.Values(groups)))
	for _, g := range want {
		if err := gatehouse.ValidatePrincipal("groups", g); err != nil {
			return err
		}
	}
	now := fmtTime(s.stamp())
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.getUser(ctx, user); err != nil {
			return err
		}
		m, err := t.memberships(ctx, user)
		if err != nil {
			return err
		}
		have := m[user]
		sort.Strings(have)
		if slices.Equal(have, want) {
			return nil
		}
		for _, g := range want {
			if _, err := t.exec(ctx, "INSERT INTO user_groups ("+groupColumns+") VALUES (?, '', '', ?, ?) ON CONFLICT DO NOTHING", g, now, now); err != nil {
				return fmt.Errorf("create group %q: %w", g, err)
			}
		}
		if _, err := t.exec(ctx, "DELETE FROM group_members WHERE user_name = ?", user); err != nil {
			return fmt.Errorf("replace memberships: %w", err)
		}
		for _, g := range want {
			if _, err := t.exec(ctx, "INSERT INTO group_members (group_name, user_name) VALUES (?, ?)", g, user); err != nil {
				return fmt.Errorf("add membership: %w", err)
			}
		}
		return t.bumpConfig(ctx)
	})
}

// CreateSCIMToken stores a SCIM bearer token's record (t.Hash set by the caller); it assigns t.ID.
func (s *Store) CreateSCIMToken(ctx context.Context, st *gatehouse.SCIMToken) error {
	if st.Hash == "" {
		return gatehouse.Invalid("hash", "is required")
	}
	now := s.stamp()
	id := newID()
	err := s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "INSERT INTO scim_tokens (id, hash, created_at) VALUES (?, ?, ?)", id, st.Hash, fmtTime(now)); err != nil {
			return fmt.Errorf("insert scim token: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.ID, st.CreatedAt = id, now
	return nil
}

func scanSCIMToken(sc scanner) (*gatehouse.SCIMToken, error) {
	var st gatehouse.SCIMToken
	var created string
	var revoked sql.NullString
	if err := sc.Scan(&st.ID, &st.Hash, &created, &revoked); err != nil {
		return nil, err
	}
	var err error
	if st.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if revoked.Valid {
		at, err := parseTime(revoked.String)
		if err != nil {
			return nil, err
		}
		st.RevokedAt = &at
	}
	return &st, nil
}

// SCIMTokenByHash returns the unrevoked SCIM token with hash; NotFound otherwise.
func (s *Store) SCIMTokenByHash(ctx context.Context, hash string) (*gatehouse.SCIMToken, error) {
	st, err := scanSCIMToken(s.queryRow(ctx, "SELECT id, hash, created_at, revoked_at FROM scim_tokens WHERE hash = ? AND revoked_at IS NULL", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.Errorf(gatehouse.ECodeNotFound, "scim token not found or revoked")
	}
	if err != nil {
		return nil, fmt.Errorf("get scim token: %w", err)
	}
	return st, nil
}

// ListSCIMTokens returns every SCIM token record, oldest first.
func (s *Store) ListSCIMTokens(ctx context.Context) ([]gatehouse.SCIMToken, error) {
	rows, err := s.query(ctx, "SELECT id, hash, created_at, revoked_at FROM scim_tokens ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("list scim tokens: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.SCIMToken{}
	for rows.Next() {
		st, err := scanSCIMToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list scim tokens: %w", err)
		}
		out = append(out, *st)
	}
	return out, rows.Err()
}

// RevokeSCIMToken revokes a SCIM token; NotFound if there is no such token.
func (s *Store) RevokeSCIMToken(ctx context.Context, id string, at time.Time) error {
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "UPDATE scim_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", fmtTime(at), id)
		if err != nil {
			return fmt.Errorf("revoke scim token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.NotFound("scim token", id)
		}
		return nil
	})
}
