package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// maxBody is the largest request body accepted.
const maxBody = 1 << 20

type errorBody struct {
	Error *gatehouse.Error `json:"error"`
}

func statusOf(code string) int {
	switch code {
	case gatehouse.ECodeInvalid:
		return http.StatusBadRequest
	case gatehouse.ECodeUnauthenticated:
		return http.StatusUnauthorized
	case gatehouse.ECodeForbidden:
		return http.StatusForbidden
	case gatehouse.ECodeNotFound:
		return http.StatusNotFound
	case gatehouse.ECodeConflict:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// fail answers with err: a *gatehouse.Error as itself, anything else as a generic 500 whose real
// cause goes to the log.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *gatehouse.Error
	if errors.As(err, &e) && statusOf(e.Code) != http.StatusInternalServerError {
		if e.Code == gatehouse.ECodeUnauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		}
		writeJSON(w, statusOf(e.Code), errorBody{e})
		return
	}
	a.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, errorBody{&gatehouse.Error{
		Code: gatehouse.ECodeInternal, Message: "internal error; the server log has the details",
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

// readBody reads at most maxBody bytes of r's body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, gatehouse.Invalid("", "the request body is larger than %d bytes", maxBody)
	}
	if err != nil {
		return nil, gatehouse.Invalid("", "reading the request body: %v", err)
	}
	return b, nil
}

// decode reads r's body strictly into v (a pointer to a struct): one JSON object, no unknown
// fields, at most maxBody bytes. It returns the body's top-level keys for PATCH.
func decode(w http.ResponseWriter, r *http.Request, v any) (map[string]bool, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	return decodeBytes(body, v)
}

func decodeBytes(body []byte, v any) (map[string]bool, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, gatehouse.Invalid("", "a JSON object body is required")
	}
	if trimmed[0] != '{' {
		return nil, gatehouse.Invalid("", "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, decodeError(err, trimmed, reflect.TypeOf(v))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, gatehouse.Invalid("", "the body must hold exactly one JSON object")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &keys); err != nil {
		return nil, gatehouse.Invalid("", "the body is not valid JSON: %v", err)
	}
	present := make(map[string]bool, len(keys))
	for k := range keys {
		present[k] = true
	}
	return present, nil
}

func decodeError(err error, body []byte, t reflect.Type) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return gatehouse.Invalid("", "the body is not valid JSON (at byte %d): %v", syntax.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return gatehouse.Invalid("", "the body is not valid JSON: it ends early")
	case errors.As(err, &typ):
		return gatehouse.Invalid(typ.Field, "must be %s, not %s", jsonKind(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		var raw any
		if json.Unmarshal(body, &raw) == nil {
			if path := unknownField(t, raw, ""); path != "" {
				return unknownFieldError(path)
			}
		}
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return unknownFieldError(name)
	}
	return gatehouse.Invalid("", "the body does not decode: %v", err)
}

func unknownFieldError(path string) error {
	if strings.HasPrefix(path, "secret.") {
		return gatehouse.Invalid(path, "is not a field of a secret reference: Gatehouse never accepts or stores a secret itself, only where the sidecar fetches it")
	}
	return gatehouse.Invalid(path, "is not a known field")
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// jsonField is one JSON-visible field of a struct type.
type jsonField struct {
	Name      string
	Index     []int
	Type      reflect.Type
	OmitEmpty bool
}

// jsonFields lists the JSON fields of struct type t as encoding/json sees them: embedded structs
// flattened, a shallower field hiding a deeper one of the same name, "-" skipped.
func jsonFields(t reflect.Type) []jsonField {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []jsonField
	seen := map[string]bool{}
	var embedded [][]int
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			embedded = append(embedded, f.Index)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		seen[name] = true
		out = append(out, jsonField{Name: name, Index: f.Index, Type: f.Type, OmitEmpty: strings.Contains(opts, "omitempty")})
	}
	for _, idx := range embedded {
		for _, f := range jsonFields(t.FieldByIndex(idx).Type) {
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			f.Index = append(append([]int{}, idx...), f.Index...)
			out = append(out, f)
		}
	}
	return out
}

// unknownField returns the path of the first key in raw (decoded JSON) that type t has no field
// for, or "". Paths look like "secret.password" and "rules[0].members".
func unknownField(t reflect.Type, raw any, prefix string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := raw.(map[string]any)
		if !ok {
			return ""
		}
		fields := map[string]reflect.Type{}
		for _, f := range jsonFields(t) {
			fields[f.Name] = f.Type
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				// encoding/json matches keys case-insensitively; so must we.
				for name, typ := range fields {
					if strings.EqualFold(name, k) {
						ft, ok = typ, true
						break
					}
				}
			}
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if !ok {
				return p
			}
			if s := unknownField(ft, obj[k], p); s != "" {
				return s
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := raw.([]any)
		if !ok {
			return ""
		}
		for i, el := range arr {
			if s := unknownField(t.Elem(), el, fmt.Sprintf("%s[%d]", prefix, i)); s != "" {
				return s
			}
		}
	}
	return ""
}

// merge copies into dst the top-level fields of src whose JSON names are in present (PATCH).
func merge[T any](dst, src *T, present map[string]bool) {
	dv, sv := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, f := range jsonFields(dv.Type()) {
		hit := present[f.Name]
		if !hit {
			for k := range present {
				if strings.EqualFold(k, f.Name) {
					hit = true
					break
				}
			}
		}
		if hit {
			dv.FieldByIndex(f.Index).Set(sv.FieldByIndex(f.Index))
		}
	}
}
