package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehousedb/gatehouse"
)

const tokenColumns = "id, name, owner, hash, expires_at, created_at, revoked_at"

func scanToken(sc scanner) (*gatehouse.AccessToken, error) {
	var t gatehouse.AccessToken
	var expires, created string
	var revoked sql.NullString
	if err := sc.Scan(&t.ID, &t.Name, &t.Owner, &t.Hash, &expires, &created, &revoked); err != nil {
		return nil, err
	}
	var err error
	if t.ExpiresAt, err = parseTime(expires); err != nil {
		return nil, err
	}
	if t.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if revoked.Valid {
		at, err := parseTime(revoked.String)
		if err != nil {
			return nil, err
		}
		t.RevokedAt = &at
	}
	return &t, nil
}

// CreateToken stores an access token record (never the secret): t.ID and t.Hash are set by the
// caller and must be unique; the owner must be an existing user (Invalid "owner").
func (s *Store) CreateToken(ctx context.Context, t *gatehouse.AccessToken) error {
	if t.ID == "" {
		return gatehouse.Invalid("id", "is required")
	}
	if len(t.Hash) != 64 {
		return gatehouse.Invalid("hash", "must be the hex SHA-256 of the token secret")
	}
	if err := gatehouse.ValidateTokenName("name", t.Name); err != nil {
		return err
	}
	if t.ExpiresAt.IsZero() {
		return gatehouse.Invalid("expires_at", "is required")
	}
	now := s.stamp()
	err := s.inTx(ctx, func(tx *tx) error {
		ok, err := tx.exists(ctx, "SELECT 1 FROM users WHERE name = ?", t.Owner)
		if err != nil {
			return fmt.Errorf("check user: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("owner", "user %q does not exist", t.Owner)
		}
		var revoked any
		if t.RevokedAt != nil {
			revoked = fmtTime(*t.RevokedAt)
		}
		res, err := tx.exec(ctx, "INSERT INTO access_tokens ("+tokenColumns+") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
			t.ID, t.Name, t.Owner, t.Hash, fmtTime(t.ExpiresAt), fmtTime(now), revoked)
		if err != nil {
			return fmt.Errorf("insert access token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("access token %q already exists", t.ID)
		}
		return tx.bumpConfig(ctx)
	})
	if err != nil {
		return err
	}
	t.CreatedAt = now
	return nil
}

// GetToken returns the token record with the given ID.
func (s *Store) GetToken(ctx context.Context, id string) (*gatehouse.AccessToken, error) {
	t, err := scanToken(s.queryRow(ctx, "SELECT "+tokenColumns+" FROM access_tokens WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.NotFound("access token", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get access token: %w", err)
	}
	return t, nil
}

// TokenByHash returns the token record whose secret hashes to hash (expired and revoked ones too:
// the caller decides, and can say why a token is refused).
func (s *Store) TokenByHash(ctx context.Context, hash string) (*gatehouse.AccessToken, error) {
	t, err := scanToken(s.queryRow(ctx, "SELECT "+tokenColumns+" FROM access_tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, gatehouse.Errorf(gatehouse.ECodeNotFound, "access token not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get access token: %w", err)
	}
	return t, nil
}

// ListTokens returns the tokens of owner ("" = everyone's), oldest first.
func (s *Store) ListTokens(ctx context.Context, owner string) ([]gatehouse.AccessToken, error) {
	query, args := "SELECT "+tokenColumns+" FROM access_tokens", []any{}
	if owner != "" {
		query, args = query+" WHERE owner = ?", []any{owner}
	}
	rows, err := s.query(ctx, query+" ORDER BY created_at, id", args...)
	if err != nil {
		return nil, fmt.Errorf("list access tokens: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.AccessToken{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list access tokens: %w", err)
		}
		out = append(out, *t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access tokens: %w", err)
	}
	return out, nil
}

// RevokeToken marks a token revoked at the given time. Revoking a revoked token keeps the first
// revocation time and changes nothing.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", fmtTime(at), id)
		if err != nil {
			return fmt.Errorf("revoke access token: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return t.bumpConfig(ctx)
		}
		ok, err := t.exists(ctx, "SELECT 1 FROM access_tokens WHERE id = ?", id)
		if err != nil {
			return fmt.Errorf("get access token: %w", err)
		}
		if !ok {
			return gatehouse.NotFound("access token", id)
		}
		return nil
	})
}
