package syncapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ErrTokenNotFound is returned by Client.LookupToken when the control plane knows no active token
// with that hash.
var ErrTokenNotFound = errors.New("access token not found")

// StatusError is an unexpected HTTP answer from the control plane.
type StatusError struct {
	StatusCode int
	Message    string // from the JSON error body, when there is one
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("control plane answered %d: %s", e.StatusCode, e.Message)
	}
	return fmt.Sprintf("control plane answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Client is the sidecar's side of the contract. Each request is signed with a fresh JWT.
type Client struct {
	base   *url.URL
	signer *Signer
	http   *http.Client
}

// NewClient returns a client for the control plane at baseURL (http or https, no query). hc may be
// nil (a client with sensible timeouts is used); its Timeout, if any, must exceed the long-poll wait.
func NewClient(baseURL string, signer *Signer, hc *http.Client) (*Client, error) {
	u, err := url.Parse(Audience(baseURL))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("control plane URL %q must be an http(s) URL like https://gatehouse.example.com", baseURL)
	}
	if signer == nil {
		return nil, errors.New("syncapi client needs a signer")
	}
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Client{base: u, signer: signer, http: hc}, nil
}

// Config long-polls for a snapshot newer than since, waiting up to wait (capped by the control
// plane at MaxWait). It returns nil, nil when nothing changed before the wait ran out.
func (c *Client) Config(ctx context.Context, since int64, wait time.Duration) (*Snapshot, error) {
	q := url.Values{"since": {strconv.FormatInt(since, 10)}, "wait": {wait.String()}}
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, ConfigPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		var s Snapshot
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			return nil, fmt.Errorf("decode snapshot: %w", err)
		}
		return &s, nil
	}
	return nil, statusError(resp)
}

// Report sends the instance's heartbeat.
func (c *Client) Report(ctx context.Context, r *Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, ReportPath, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	return nil
}

// LookupToken asks the control plane about a token the snapshot did not have, by the hex SHA-256
// of its secret. It returns ErrTokenNotFound when there is no such active token.
func (c *Client) LookupToken(ctx context.Context, hash string) (*TokenLookup, error) {
	if !ValidHash(hash) {
		return nil, errors.New("token hash must be a lowercase hex SHA-256")
	}
	resp, err := c.do(ctx, http.MethodGet, TokenLookupPath+hash, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, ErrTokenNotFound
	case http.StatusOK:
		var l TokenLookup
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			return nil, fmt.Errorf("decode token lookup: %w", err)
		}
		return &l, nil
	}
	return nil, statusError(resp)
}

func (c *Client) do(ctx context.Context, method, pathAndQuery string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := c.newRequest(ctx, method, pathAndQuery, rd)
	if err != nil {
		return nil, err
	}
	return c.http.Do(req)
}

// newRequest returns a signed request with a JSON body when body is not nil.
func (c *Client) newRequest(ctx context.Context, method, pathAndQuery string, body io.Reader) (*http.Request, error) {
	jwt, err := c.signer.Sign()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+pathAndQuery, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

func statusError(resp *http.Response) error {
	e := &StatusError{StatusCode: resp.StatusCode}
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &body) == nil {
		e.Message = body.Error.Message
	}
	return e
}

// CloseIdleConnections closes the client's idle connections to the control plane.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
