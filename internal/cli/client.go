package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// client talks to the control plane's REST API under /api/v1.
type client struct {
	base  string // "http://127.0.0.1:8080"
	token string
	http  *http.Client

	// refresh, when set, renews an expired single sign-on session once: on a 401 the request is
	// sent again with the token it returns.
	refresh func(ctx context.Context) (string, error)
}

func newClient(base string) *client {
	return &client{base: base, http: &http.Client{Timeout: 60 * time.Second}}
}

// path joins escaped segments under /api/v1: path("repositories", name, "users").
func path(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// do sends body (if not nil) as JSON and returns the response body. A non-2xx answer becomes a
// *gatehouse.Error carrying the API's code, field and message.
func (c *client) do(ctx context.Context, method, p string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, rd)
	if err != nil {
		return nil, fmt.Errorf("control plane URL %q: %w", c.base, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gatehouse-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the control plane at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", c.base, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return b, nil
	}
	if resp.StatusCode == http.StatusUnauthorized && c.refresh != nil {
		refresh := c.refresh
		c.refresh = nil
		if tok, rerr := refresh(ctx); rerr == nil {
			c.token = tok
			return c.do(ctx, method, p, body)
		}
	}
	return nil, apiError(resp, b)
}

// apiError turns an error answer into a *gatehouse.Error, adding what to do for 401.
func apiError(resp *http.Response, b []byte) error {
	var body struct {
		Error *gatehouse.Error `json:"error"`
	}
	ge := &gatehouse.Error{}
	if json.Unmarshal(b, &body) == nil && body.Error != nil && body.Error.Message != "" {
		ge = body.Error
	} else {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		ge.Message = fmt.Sprintf("control plane answered %s", resp.Status)
		if msg != "" {
			ge.Message += ": " + msg
		}
	}
	if ge.Code == "" {
		ge.Code = codeForStatus(resp.StatusCode)
	}
	if resp.StatusCode == http.StatusUnauthorized && !strings.HasSuffix(resp.Request.URL.Path, "/login") {
		ge = &gatehouse.Error{Code: ge.Code, Field: ge.Field, Message: ge.Message + "; log in again with gatehouse login"}
	}
	return ge
}

func codeForStatus(s int) string {
	switch s {
	case http.StatusBadRequest:
		return gatehouse.ECodeInvalid
	case http.StatusUnauthorized:
		return gatehouse.ECodeUnauthenticated
	case http.StatusForbidden:
		return gatehouse.ECodeForbidden
	case http.StatusNotFound:
		return gatehouse.ECodeNotFound
	case http.StatusConflict:
		return gatehouse.ECodeConflict
	}
	return gatehouse.ECodeInternal
}

// get, post, put and del are do with a method.
func (c *client) get(ctx context.Context, p string) (json.RawMessage, error) {
	return c.do(ctx, http.MethodGet, p, nil)
}

func (c *client) post(ctx context.Context, p string, body any) (json.RawMessage, error) {
	return c.do(ctx, http.MethodPost, p, body)
}

func (c *client) put(ctx context.Context, p string, body any) (json.RawMessage, error) {
	return c.do(ctx, http.MethodPut, p, body)
}

func (c *client) del(ctx context.Context, p string, cascade bool) (json.RawMessage, error) {
	if cascade {
		p += "?cascade=true"
	}
	return c.do(ctx, http.MethodDelete, p, nil)
}

// decodeList decodes a list answer: a JSON array, or an object with one array field (such as
// {"items":[...]}).
func decodeList[T any](raw json.RawMessage) ([]T, error) {
	raw = bytes.TrimSpace(raw)
	var out []T
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return out, nil
	}
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("decode answer: %w", err)
		}
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	for _, v := range obj {
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] == '[' {
			if err := json.Unmarshal(v, &out); err != nil {
				return nil, fmt.Errorf("decode answer: %w", err)
			}
			return out, nil
		}
	}
	return out, nil
}

func decode[T any](raw json.RawMessage) (*T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return &v, nil
}
