package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// apiError is an error answer of the API: its status and its {"error":{...}} body.
type apiError struct {
	Status               int
	Code, Field, Message string
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("API %d: %s: %s", e.Status, e.Field, e.Message)
	}
	return fmt.Sprintf("API %d: %s", e.Status, e.Message)
}

// apiCode returns the API error code of err, or "internal".
func apiCode(err error) string {
	var e *apiError
	if errors.As(err, &e) {
		return e.Code
	}
	return gatehouse.ECodeInternal
}

// recorder is the http.ResponseWriter of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// p builds an API path from a format and path segments, escaping each segment.
func p(format string, segs ...any) string {
	esc := make([]any, len(segs))
	for i, s := range segs {
		esc[i] = url.PathEscape(fmt.Sprint(s))
	}
	return fmt.Sprintf(format, esc...)
}

// call makes an in-process API request on behalf of the browser request r, as session s (nil:
// anonymous). in (if not nil) is sent as JSON; a 2xx body is decoded into out (if not nil). An
// error answer comes back as *apiError.
func (c *Console) call(r *http.Request, s *session, method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, &body)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", method, path, err)
	}
	req.Host = r.Host
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("User-Agent", "gatehouse-console ("+r.UserAgent()+")")
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 300 {
		var eb struct {
			Error *gatehouse.Error `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &eb) != nil || eb.Error == nil {
			return fmt.Errorf("%s %s: status %d without an error body: %.200s", method, path, rec.status, strings.TrimSpace(rec.body.String()))
		}
		return &apiError{Status: rec.status, Code: eb.Error.Code, Field: eb.Error.Field, Message: eb.Error.Message}
	}
	if out != nil && rec.status != http.StatusNoContent {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// routeMissing reports whether err is the API's answer for a route it does not have (yet).
func routeMissing(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Status == http.StatusNotFound && strings.HasPrefix(e.Message, "no such endpoint")
}
