package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehousedb/gatehouse"
)

// The device authorization grant (RFC 8628), for signing in from a machine without a browser.
// The control plane is the OAuth client: it asks the IdP's device_authorization_endpoint for a
// device code and a user code, and polls the token endpoint with the device code, authenticated
// with the client secret, which never leaves the control plane. The person opens the
// verification URI anywhere, signs in and enters the user code.
//
//	CLI                    control plane                       IdP
//	 |-- POST sso/device -->|-- device_authorization_endpoint -->|
//	 |<- user_code, URI ----|<- device_code, user_code, URI -----|
//	 |                      |          (person: URI, sign-in, user code)
//	 |-- POST .../poll ---->|-- token (device_code grant) ------>|
//	 |<- pending -----------|<- authorization_pending -----------|
//	 |-- POST .../poll ---->|-- token (device_code grant) ------>|
//	 |<- session -----------|<- ID token (verified, mapped) -----|

// GrantTypeDeviceCode is the token request's grant_type for a device code (RFC 8628 section 3.4).
const GrantTypeDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// Poll outcomes that are not failures: the person has not finished yet (ErrAuthorizationPending),
// or the poller must wait 5 seconds longer between polls from now on (ErrSlowDown).
var (
	ErrAuthorizationPending = errors.New("the sign-in is not approved yet")
	ErrSlowDown             = errors.New("polling too often")
)

// DeviceAuthorization is the IdP's answer to a device authorization request (RFC 8628 section
// 3.2). The device code is a secret of the control plane: it is never logged nor sent on.
type DeviceAuthorization struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string // the URI with the user code in it; "" when the IdP has none
	ExpiresIn               time.Duration
	Interval                time.Duration // between polls; 5s when the IdP does not say
}

// String and LogValue keep the device code out of logs.
func (d DeviceAuthorization) String() string {
	return fmt.Sprintf("verification_uri=%s expires_in=%s device_code=[REDACTED]", d.VerificationURI, d.ExpiresIn)
}

// LogValue implements slog.LogValuer.
func (d DeviceAuthorization) LogValue() slog.Value { return slog.StringValue(d.String()) }

// deviceUnsupportedf is the refusal when this IdP or client cannot do the device grant: not found,
// the same code as single sign-on being off, so that a CLI can fall back to the loopback flow.
func deviceUnsupportedf(format string, args ...any) error {
	return gatehouse.Errorf(gatehouse.ECodeNotFound, format+"; sign in with gatehouse login --sso --no-browser instead", args...)
}

// DeviceSupported reports whether the IdP advertises a device_authorization_endpoint.
func (o *OIDC) DeviceSupported(ctx context.Context) (bool, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return false, err
	}
	return p.Endpoint().DeviceAuthURL != "", nil
}

// StartDevice asks the IdP for a device code and a user code. An IdP without a device
// authorization endpoint, or one that does not allow this client the grant, is a not-found
// *gatehouse.Error.
func (o *OIDC) StartDevice(ctx context.Context) (*DeviceAuthorization, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	endpoint := p.Endpoint().DeviceAuthURL
	if endpoint == "" {
		return nil, deviceUnsupportedf("the identity provider %s does not support the device authorization grant (its discovery document has no device_authorization_endpoint)", o.cfg.Issuer)
	}
	var out struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURL         string `json:"verification_url"` // Google's name for it
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int64  `json:"expires_in"`
		Interval                int64  `json:"interval"`
	}
	form := url.Values{"scope": {strings.Join(o.cfg.Scopes, " ")}}
	if err := o.postForm(ctx, p, endpoint, form, &out); err != nil {
		var te *tokenError
		if errors.As(err, &te) && (te.Code == "unauthorized_client" || te.Code == "unsupported_grant_type") {
			return nil, deviceUnsupportedf("the identity provider does not allow client %s the device authorization grant (%s); allow it for this client at the IdP", o.cfg.ClientID, te)
		}
		if errors.As(err, &te) {
			return nil, gatehouse.Errorf(gatehouse.ECodeInvalid, "the identity provider refused the device authorization request (%s)", te)
		}
		return nil, fmt.Errorf("device authorization request: %w", err)
	}
	d := &DeviceAuthorization{DeviceCode: out.DeviceCode, UserCode: out.UserCode, VerificationURI: out.VerificationURI,
		VerificationURIComplete: out.VerificationURIComplete,
		ExpiresIn:               time.Duration(out.ExpiresIn) * time.Second, Interval: time.Duration(out.Interval) * time.Second}
	if d.VerificationURI == "" {
		d.VerificationURI = out.VerificationURL
	}
	if d.DeviceCode == "" || d.UserCode == "" || d.VerificationURI == "" || d.ExpiresIn <= 0 {
		return nil, errors.New("device authorization request: the identity provider's answer lacks device_code, user_code, verification_uri or expires_in")
	}
	if d.Interval <= 0 {
		d.Interval = 5 * time.Second // RFC 8628 section 3.2
	}
	return d, nil
}

// PollDevice asks the IdP's token endpoint once whether the person approved the device code. It
// returns ErrAuthorizationPending or ErrSlowDown while they have not, and once they have, the
// Identity of the verified ID token (issuer, audience, expiry, signature; the device grant has
// no nonce) mapped to a role exactly as in the browser flow. Refusals are *gatehouse.Error.
func (o *OIDC) PollDevice(ctx context.Context, deviceCode string) (*Identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx = oidc.ClientContext(ctx, o.cfg.HTTPClient)
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		IDToken     string `json:"id_token"`
	}
	form := url.Values{"grant_type": {GrantTypeDeviceCode}, "device_code": {deviceCode}}
	if err := o.postForm(ctx, p, p.Endpoint().TokenURL, form, &out); err != nil {
		var te *tokenError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("poll the token endpoint: %w", err)
		}
		switch te.Code {
		case "authorization_pending":
			return nil, ErrAuthorizationPending
		case "slow_down":
			return nil, ErrSlowDown
		case "access_denied":
			return nil, gatehouse.Errorf(gatehouse.ECodeForbidden, "the sign-in was denied at the identity provider")
		case "expired_token":
			return nil, unauthenticatedf("the code expired before the sign-in was approved")
		}
		return nil, unauthenticatedf("the identity provider refused the device code (%s)", te)
	}
	if out.IDToken == "" {
		return nil, unauthenticatedf("the identity provider answered without an ID token; is the openid scope allowed for this client?")
	}
	idt, err := o.verifyIDToken(ctx, out.IDToken)
	if err != nil {
		return nil, err
	}
	return o.signedIn(ctx, p, idt, &oauth2.Token{AccessToken: out.AccessToken, TokenType: out.TokenType})
}

// tokenError is an OAuth error answer (RFC 6749 section 5.2).
type tokenError struct {
	Status      int
	Code        string
	Description string
}

func (e *tokenError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// postForm POSTs form to an endpoint of the IdP as this client and decodes the JSON answer into
// out. The client authenticates with HTTP Basic (client_secret_basic, the OIDC default), or in the
// form when the IdP lists only client_secret_post; a client without a secret sends its ID only.
func (o *OIDC) postForm(ctx context.Context, p *oidc.Provider, endpoint string, form url.Values, out any) error {
	form = cloneValues(form)
	basic := false
	switch {
	case o.cfg.ClientSecret == "":
		form.Set("client_id", o.cfg.ClientID)
	case o.secretInForm(p):
		form.Set("client_id", o.cfg.ClientID)
		form.Set("client_secret", o.cfg.ClientSecret)
	default:
		basic = true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 section 2.3.1: both are form-encoded before they are put in the header.
		req.SetBasicAuth(url.QueryEscape(o.cfg.ClientID), url.QueryEscape(o.cfg.ClientSecret))
	}
	resp, err := o.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", endpoint, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("decode the answer of %s: %w", endpoint, err)
		}
		return nil
	}
	te := &tokenError{Status: resp.StatusCode}
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		v, _ := url.ParseQuery(string(body))
		e.Error, e.ErrorDescription = v.Get("error"), v.Get("error_description")
	} else {
		_ = json.Unmarshal(body, &e)
	}
	if e.Error == "" {
		return fmt.Errorf("%s answered %s", endpoint, resp.Status)
	}
	te.Code, te.Description = e.Error, e.ErrorDescription
	return te
}

// secretInForm reports whether the IdP takes the client secret only in the form body.
func (o *OIDC) secretInForm(p *oidc.Provider) bool {
	var meta struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil || len(meta.Methods) == 0 {
		return false
	}
	return !slices.Contains(meta.Methods, "client_secret_basic") && slices.Contains(meta.Methods, "client_secret_post")
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+2)
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
