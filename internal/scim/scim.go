package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// Store is the persistence SCIM needs; internal/store implements it.
type Store interface {
	CreateUser(ctx context.Context, u *gatehouse.User) error
	GetUser(ctx context.Context, name string) (*gatehouse.User, error)
	UpdateUser(ctx context.Context, u *gatehouse.User) error
	DeleteUser(ctx context.Context, name string) error
	ListUsers(ctx context.Context) ([]gatehouse.User, error)
	UserPasswordHash(ctx context.Context, name string) (string, error)
	RevokeUserAccess(ctx context.Context, name string) error

	CreateGroup(ctx context.Context, g *gatehouse.Group) error
	GetGroup(ctx context.Context, name string) (*gatehouse.Group, error)
	UpdateGroup(ctx context.Context, g *gatehouse.Group) error
	DeleteGroup(ctx context.Context, name string) error
	ListGroups(ctx context.Context) ([]gatehouse.Group, error)

	SCIMTokenByHash(ctx context.Context, hash string) (*gatehouse.SCIMToken, error)
}

// Schema URNs.
const (
	SchemaUser      = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup     = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaList      = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError     = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaPatch     = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	schemaSPConfig  = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaResType   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSchema    = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	contentType     = "application/scim+json"
	maxBody         = 1 << 20
	defaultPageSize = 100
	maxPageSize     = 500
)

// Prefix is where the handler is mounted.
const Prefix = "/scim/v2"

// Config configures the SCIM service. Store is required. AdminGroup reports whether members of a
// group are admins (the control plane's --oidc-admin-groups); groups it names are created with
// role ADMIN. BaseURL is the control plane's public URL, for meta.location.
type Config struct {
	Store      Store
	Logger     *slog.Logger
	BaseURL    string
	AdminGroup func(name string) bool
}

// Server serves /scim/v2.
type Server struct {
	store      Store
	logger     *slog.Logger
	base       string
	adminGroup func(string) bool
	mux        *http.ServeMux
}

// New returns the SCIM service.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("scim: Config.Store is required")
	}
	s := &Server{store: cfg.Store, logger: cfg.Logger, base: strings.TrimSuffix(cfg.BaseURL, "/") + Prefix, adminGroup: cfg.AdminGroup}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("component", "scim")
	if s.adminGroup == nil {
		s.adminGroup = func(string) bool { return false }
	}
	m := http.NewServeMux()
	m.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", s.serviceProviderConfig)
	m.HandleFunc("GET "+Prefix+"/ResourceTypes", s.resourceTypes)
	m.HandleFunc("GET "+Prefix+"/ResourceTypes/{id}", s.resourceTypes)
	m.HandleFunc("GET "+Prefix+"/Schemas", s.schemas)
	m.HandleFunc("GET "+Prefix+"/Schemas/{id}", s.schemas)
	m.HandleFunc("GET "+Prefix+"/Users", s.listUsers)
	m.HandleFunc("POST "+Prefix+"/Users", s.createUser)
	m.HandleFunc("GET "+Prefix+"/Users/{id}", s.getUser)
	m.HandleFunc("PUT "+Prefix+"/Users/{id}", s.replaceUser)
	m.HandleFunc("PATCH "+Prefix+"/Users/{id}", s.patchUser)
	m.HandleFunc("DELETE "+Prefix+"/Users/{id}", s.deleteUser)
	m.HandleFunc("GET "+Prefix+"/Groups", s.listGroups)
	m.HandleFunc("POST "+Prefix+"/Groups", s.createGroup)
	m.HandleFunc("GET "+Prefix+"/Groups/{id}", s.getGroup)
	m.HandleFunc("PUT "+Prefix+"/Groups/{id}", s.replaceGroup)
	m.HandleFunc("PATCH "+Prefix+"/Groups/{id}", s.patchGroup)
	m.HandleFunc("DELETE "+Prefix+"/Groups/{id}", s.deleteGroup)
	m.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, &Error{Status: http.StatusNotFound, Detail: fmt.Sprintf("no such SCIM endpoint: %s %s", r.Method, r.URL.Path)})
	})
	s.mux = m
	return s, nil
}

// ServeHTTP authenticates the provisioning client's bearer token, then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.authenticate(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-scim"`)
		s.fail(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authenticate(r *http.Request) error {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return &Error{Status: http.StatusUnauthorized, Detail: "send Authorization: Bearer TOKEN with a token from `gatehouse scim token create`"}
	}
	_, err := s.store.SCIMTokenByHash(r.Context(), token.Hash(secret))
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		return &Error{Status: http.StatusUnauthorized, Detail: "the SCIM bearer token is unknown or revoked"}
	}
	if err != nil {
		return fmt.Errorf("look up scim token: %w", err)
	}
	return nil
}

// Error is a SCIM error answer (RFC 7644 §3.12).
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string { return e.Detail }

func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"schemas": []string{SchemaError}, "status": strconv.Itoa(e.Status), "scimType": e.ScimType, "detail": e.Detail,
	})
}

func badRequest(scimType, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// fail answers with err: a *Error or *gatehouse.Error as the client should see it, anything else
// as a 500 whose cause goes to the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var se *Error
	var ge *gatehouse.Error
	switch {
	case errors.As(err, &se):
	case errors.As(err, &ge):
		se = &Error{Detail: ge.Error()}
		switch ge.Code {
		case gatehouse.ECodeInvalid:
			se.Status, se.ScimType = http.StatusBadRequest, "invalidValue"
		case gatehouse.ECodeNotFound:
			se.Status = http.StatusNotFound
		case gatehouse.ECodeConflict:
			se.Status, se.ScimType = http.StatusConflict, "uniqueness"
		case gatehouse.ECodeForbidden:
			se.Status = http.StatusForbidden
		case gatehouse.ECodeUnauthenticated:
			se.Status = http.StatusUnauthorized
		default:
			se = nil
		}
	}
	if se == nil {
		s.logger.ErrorContext(r.Context(), "scim request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		se = &Error{Status: http.StatusInternalServerError, Detail: "internal error; the server log has the details"}
	}
	write(w, se.Status, se)
}

func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readJSON decodes the body (at most maxBody bytes) into v. SCIM clients send attributes Gatehouse
// does not keep (phone numbers, addresses...), so unknown fields are ignored rather than refused.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return badRequest("invalidSyntax", "reading the request body: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest("invalidSyntax", "the body is not the expected JSON: %v", err)
	}
	return nil
}

type meta struct {
	ResourceType string    `json:"resourceType"`
	Created      time.Time `json:"created"`
	LastModified time.Time `json:"lastModified"`
	Location     string    `json:"location"`
}

type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	ItemsPerPage int      `json:"itemsPerPage"`
	StartIndex   int      `json:"startIndex"`
	Resources    []any    `json:"Resources"`
}

// page applies startIndex (1-based) and count to n items and returns the slice bounds.
func page(r *http.Request, n int) (start, end, startIndex int, err error) {
	q := r.URL.Query()
	startIndex, count := 1, defaultPageSize
	if v := q.Get("startIndex"); v != "" {
		if startIndex, err = strconv.Atoi(v); err != nil {
			return 0, 0, 0, badRequest("invalidValue", "startIndex must be an integer")
		}
		if startIndex < 1 {
			startIndex = 1
		}
	}
	if v := q.Get("count"); v != "" {
		if count, err = strconv.Atoi(v); err != nil {
			return 0, 0, 0, badRequest("invalidValue", "count must be an integer")
		}
		count = max(0, min(count, maxPageSize))
	}
	start = min(startIndex-1, n)
	end = min(start+count, n)
	return start, end, startIndex, nil
}

// eqFilter parses the one filter form provisioning clients use to find a resource before creating
// it: `ATTRIBUTE eq "VALUE"`. It returns the value, or "" when there is no filter.
func eqFilter(r *http.Request, attribute string) (string, bool, error) {
	f := strings.TrimSpace(r.URL.Query().Get("filter"))
	if f == "" {
		return "", false, nil
	}
	attr, rest, ok := strings.Cut(f, " ")
	op, val, ok2 := strings.Cut(strings.TrimSpace(rest), " ")
	val = strings.TrimSpace(val)
	if !ok || !ok2 || !strings.EqualFold(attr, attribute) || !strings.EqualFold(op, "eq") || len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", false, badRequest("invalidFilter", "only the filter %s eq \"VALUE\" is supported", attribute)
	}
	var s string
	if err := json.Unmarshal([]byte(val), &s); err != nil {
		return "", false, badRequest("invalidFilter", "the filter value is not a valid string: %v", err)
	}
	return s, true, nil
}
