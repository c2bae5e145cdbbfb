package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// Device sign-in (RFC 8628) for CLIs on machines without a browser: POST /api/v1/sso/device makes
// the control plane ask the IdP for a device code; the CLI shows the person the verification URI
// and user code and polls POST /api/v1/sso/device/poll, which polls the IdP's token endpoint once
// per call. The IdP's device code and the client secret stay here: the CLI holds only device_id,
// a random handle stored by hash. When the person has signed in and approved, the ID token is
// verified and mapped like the browser flow's, and the CLI gets the same refreshable session
// POST /api/v1/sso/token gives.
//
// Each poll consumes the pending grant and, while the sign-in is still pending, stores it again:
// two polls of one device_id never reach the IdP at once, and a finished sign-in is used once.
const deviceIDPrefix = "ghd_"

type ssoDeviceStart struct {
	DeviceID                string `json:"device_id"` // secret: polls with it get the session
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	ExpiresIn               int    `json:"expires_in"` // seconds
	Interval                int    `json:"interval"`   // seconds to wait between polls
}

type ssoDevicePollRequest struct {
	DeviceID string `json:"device_id"`
}

// ssoDevicePoll answers a poll: "pending" (wait interval seconds and poll again), "slow_down"
// (the same, with the longer interval given), or "complete" with the session.
type ssoDevicePoll struct {
	Status           string     `json:"status"`
	Interval         int        `json:"interval,omitempty"`
	Token            string     `json:"token,omitempty"`
	ExpiresAt        *time.Time `json:"expires_at,omitempty"`
	RefreshToken     string     `json:"refresh_token,omitempty"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	Username         string     `json:"username,omitempty"`
}

// deviceGrant is the data of a GrantDevice.
type deviceGrant struct {
	DeviceCode string    `json:"device_code"` // the IdP's
	Interval   int       `json:"interval"`    // seconds
	NextPoll   time.Time `json:"next_poll"`   // polls before this are answered slow_down without asking the IdP
}

func (a *API) registerSSODeviceRoutes(mux *http.ServeMux) {
	for _, rt := range []route{
		{Method: "POST", Path: "/api/v1/sso/device", Access: public, Summary: "CLIs without a browser: start a device sign-in (RFC 8628) at the identity provider; show the person the verification URI and user code, then poll with device_id",
			Response: ssoDeviceStart{}, Status: 200, handle: a.ssoDeviceStart},
		{Method: "POST", Path: "/api/v1/sso/device/poll", Access: public, Summary: "CLIs: poll a device sign-in; \"pending\" or \"slow_down\" until the person has approved it, then \"complete\" with a session and a refresh token",
			Request: ssoDevicePollRequest{}, Response: ssoDevicePoll{}, Status: 200, handle: a.ssoDevicePoll},
	} {
		a.handle(mux, rt)
	}
}

func (a *API) ssoDeviceStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.oidc == nil {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeNotFound, "single sign-on is not configured on this control plane (gatehouse server --oidc-issuer ...)"))
		return
	}
	d, err := a.oidc.StartDevice(ctx)
	if err != nil {
		a.idpFail(w, r, err)
		return
	}
	id, err := randomSecret(deviceIDPrefix)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	data, _ := json.Marshal(deviceGrant{DeviceCode: d.DeviceCode, Interval: int(d.Interval / time.Second)})
	if err := a.store.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: token.Hash(id), Kind: gatehouse.GrantDevice, Data: string(data),
		ExpiresAt: a.now().Add(d.ExpiresIn)}); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ssoDeviceStart{DeviceID: id, UserCode: d.UserCode, VerificationURI: d.VerificationURI,
		VerificationURIComplete: d.VerificationURIComplete, ExpiresIn: int(d.ExpiresIn / time.Second), Interval: int(d.Interval / time.Second)})
}

func (a *API) ssoDevicePoll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.oidc == nil {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeNotFound, "single sign-on is not configured on this control plane"))
		return
	}
	var in ssoDevicePollRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.DeviceID == "" {
		a.fail(w, r, gatehouse.Invalid("device_id", "is required: the device_id POST /api/v1/sso/device answered"))
		return
	}
	g, err := a.store.ConsumeSSOGrant(ctx, gatehouse.GrantDevice, token.Hash(in.DeviceID))
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "this device sign-in has expired, is finished or is unknown"))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var dg deviceGrant
	if err := json.Unmarshal([]byte(g.Data), &dg); err != nil {
		a.fail(w, r, fmt.Errorf("decode device sign-in: %w", err))
		return
	}
	now := a.now()
	if now.Before(dg.NextPoll) {
		// Polling faster than the interval: say so without passing it on to the IdP, whose
		// rate limits would count against every user of this control plane.
		dg.Interval += 5
		a.devicePending(ctx, w, r, g, dg, "slow_down")
		return
	}
	id, err := a.oidc.PollDevice(ctx, dg.DeviceCode)
	switch {
	case errors.Is(err, auth.ErrAuthorizationPending):
		a.devicePending(ctx, w, r, g, dg, "pending")
		return
	case errors.Is(err, auth.ErrSlowDown):
		dg.Interval += 5 // RFC 8628 section 3.5
		a.devicePending(ctx, w, r, g, dg, "slow_down")
		return
	case err != nil:
		var ge *gatehouse.Error
		if !errors.As(err, &ge) {
			// The IdP could not be reached or answered nonsense: the sign-in may still be
			// approved, so keep it for the next poll.
			_ = a.putDeviceGrant(ctx, g, dg) // at worst the CLI's next poll finds it gone
		}
		a.idpFail(w, r, err)
		return
	}
	u, err := a.ssoUser(ctx, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger.InfoContext(ctx, "single sign-on", "user", u.Name, "role", id.Role, "groups", id.Groups, "cli", true, "device", true)
	s, err := a.cliSession(ctx, u.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ssoDevicePoll{Status: "complete", Token: s.Token, ExpiresAt: &s.ExpiresAt,
		RefreshToken: s.RefreshToken, RefreshExpiresAt: &s.RefreshExpiresAt, Username: s.Username})
}

// devicePending stores the device sign-in again for the next poll and tells the CLI to wait.
func (a *API) devicePending(ctx context.Context, w http.ResponseWriter, r *http.Request, g *gatehouse.SSOGrant, dg deviceGrant, status string) {
	// One second of slack: the CLI's wait starts when it reads this answer, a little after now.
	dg.NextPoll = a.now().Add(time.Duration(dg.Interval)*time.Second - time.Second)
	if err := a.putDeviceGrant(ctx, g, dg); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ssoDevicePoll{Status: status, Interval: dg.Interval})
}

func (a *API) putDeviceGrant(ctx context.Context, g *gatehouse.SSOGrant, dg deviceGrant) error {
	data, _ := json.Marshal(dg)
	return a.store.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: g.Hash, Kind: gatehouse.GrantDevice, Data: string(data), ExpiresAt: g.ExpiresAt})
}

// idpFail answers an error of a call to the IdP: refusals as they are, and an IdP that cannot be
// reached as 502 with the reason (which names the IdP's endpoint, never a code or secret).
func (a *API) idpFail(w http.ResponseWriter, r *http.Request, err error) {
	var ge *gatehouse.Error
	if errors.As(err, &ge) {
		a.fail(w, r, err)
		return
	}
	a.logger.ErrorContext(r.Context(), "device sign-in: the identity provider failed", "err", err)
	writeJSON(w, http.StatusBadGateway, errorBody{&gatehouse.Error{Code: gatehouse.ECodeInternal,
		Message: "the identity provider cannot be reached or answered unexpectedly: " + err.Error()}})
}
