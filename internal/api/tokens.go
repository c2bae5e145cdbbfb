package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// SettingMaxTokenTTL is the settings key of the longest access-token lifetime.
const SettingMaxTokenTTL = "max_token_ttl"

// maxSettableTTL bounds what an admin may set as the maximum token lifetime.
const maxSettableTTL = 365 * 24 * time.Hour

// defaultTokenTTL is the lifetime of a token whose request names none (capped by the maximum).
const defaultTokenTTL = time.Hour

type tokenRequest struct {
	TTL  string `json:"ttl,omitempty"` // Go duration ("90m", "1h") or whole days ("7d"); default 1h
	Name string `json:"name,omitempty"`
}

// tokenCreated is the only answer that ever carries a token's secret.
type tokenCreated struct {
	gatehouse.AccessToken
	Token string `json:"token"`
}

type settings struct {
	MaxTokenTTL string `json:"max_token_ttl,omitempty"`
	// ActivityRetention is how long activity records are kept, like 90d (the default).
	ActivityRetention string `json:"activity_retention,omitempty"`
}

// parseTTL parses "90m", "1h30m" or "7d".
func parseTTL(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("bad day count %q", d)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// formatTTL writes a duration the way people write it: "24h", "1h30m", "90s".
func formatTTL(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (a *API) maxTokenTTL(ctx context.Context) (time.Duration, error) {
	v, err := a.store.Setting(ctx, SettingMaxTokenTTL)
	if err != nil {
		return 0, fmt.Errorf("read setting %s: %w", SettingMaxTokenTTL, err)
	}
	if v == "" {
		return gatehouse.DefaultMaxTokenTTL, nil
	}
	d, err := parseTTL(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("setting %s holds %q, not a duration", SettingMaxTokenTTL, v)
	}
	return d, nil
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), caller(r.Context())
	var in tokenRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := gatehouse.ValidateTokenName("name", in.Name); err != nil {
		a.fail(w, r, err)
		return
	}
	max, err := a.maxTokenTTL(ctx)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ttl := min(defaultTokenTTL, max)
	if in.TTL != "" {
		if ttl, err = parseTTL(in.TTL); err != nil || ttl <= 0 {
			a.fail(w, r, gatehouse.Invalid("ttl", "must be a positive duration like 30m, 1h or 7d"))
			return
		}
	}
	if ttl > max {
		a.fail(w, r, gatehouse.Invalid("ttl", "must be at most %s, the maximum token lifetime an admin has set", formatTTL(max)))
		return
	}
	id, err := token.Random(20)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	secret, hash, err := token.Mint()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now().UTC()
	t := &gatehouse.AccessToken{ID: id, Name: in.Name, Owner: me.Name, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := a.store.CreateToken(ctx, t); err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger.InfoContext(ctx, "access token created", "token_id", t.ID, "owner", t.Owner, "expires_at", t.ExpiresAt)
	stored, err := a.store.GetToken(ctx, t.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenCreated{AccessToken: *stored, Token: secret})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	me := caller(r.Context())
	owner := r.URL.Query().Get("owner")
	if !isAdmin(me) {
		if owner != "" && owner != me.Name {
			a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeForbidden, "only admins can list other users' tokens"))
			return
		}
		owner = me.Name
	}
	out, err := a.store.ListTokens(r.Context(), owner)
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

// ownToken returns token id if the caller may see it; others' tokens are "not found" to data
// consumers, so that IDs cannot be probed.
func (a *API) ownToken(ctx context.Context, id string) (*gatehouse.AccessToken, error) {
	t, err := a.store.GetToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if me := caller(ctx); !isAdmin(me) && t.Owner != me.Name {
		return nil, gatehouse.NotFound("access token", id)
	}
	return t, nil
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request) {
	out, err := a.ownToken(r.Context(), r.PathValue("id"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := a.ownToken(ctx, r.PathValue("id"))
	if err == nil && t.RevokedAt == nil {
		err = a.store.RevokeToken(ctx, t.ID, a.now().UTC())
		if err == nil {
			a.logger.InfoContext(ctx, "access token revoked", "token_id", t.ID, "owner", t.Owner, "by", caller(ctx).Name)
		}
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- settings

func (a *API) getSettings(w http.ResponseWriter, r *http.Request) {
	max, err := a.maxTokenTTL(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	keep, err := a.store.Setting(r.Context(), settingActivityRetention)
	if keep == "" {
		keep = strconv.Itoa(int(DefaultActivityRetention/(24*time.Hour))) + "d" // as documented: 90d
	}
	a.answer(w, r, http.StatusOK, settings{MaxTokenTTL: formatTTL(max), ActivityRetention: keep}, err)
}

func (a *API) putSettings(w http.ResponseWriter, r *http.Request) {
	var in settings
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.MaxTokenTTL != "" {
		d, err := parseTTL(in.MaxTokenTTL)
		if err != nil || d < time.Minute || d > maxSettableTTL {
			a.fail(w, r, gatehouse.Invalid("max_token_ttl", "must be a duration from 1m to %s, like 12h or 7d", formatTTL(maxSettableTTL)))
			return
		}
		if err := a.store.SetSetting(r.Context(), SettingMaxTokenTTL, d.String()); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	if in.ActivityRetention != "" {
		d, err := parseTTL(in.ActivityRetention)
		if err != nil || d < time.Hour {
			a.fail(w, r, gatehouse.Invalid("activity_retention", "must be a duration of at least 1h, like 90d"))
			return
		}
		if err := a.store.SetSetting(r.Context(), settingActivityRetention, in.ActivityRetention); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	a.getSettings(w, r)
}
