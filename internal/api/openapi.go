package api

import (
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gatehousedb/gatehouse"
)

// enums lists the values of the string types whose values are closed sets.
var enums = map[reflect.Type][]string{
	reflect.TypeFor[gatehouse.DatabaseType](): strs(gatehouse.DatabaseTypes),
	reflect.TypeFor[gatehouse.TLSMode]():      strs(gatehouse.TLSModes),
	reflect.TypeFor[gatehouse.SecretSource](): strs(gatehouse.SecretSources),
	reflect.TypeFor[gatehouse.Role]():         {string(gatehouse.RoleAdmin), string(gatehouse.RoleDataConsumer)},
}

func strs[T ~string](v []T) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = string(s)
	}
	return out
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

type object = map[string]any

// openAPIDocument builds the OpenAPI 3.0 document from the route table.
func (a *API) openAPIDocument() object {
	schemas := object{
		"Error": object{
			"type": "object", "required": []string{"error"},
			"properties": object{"error": object{
				"type": "object", "required": []string{"code", "message"},
				"properties": object{
					"code":    object{"type": "string", "enum": []string{gatehouse.ECodeInvalid, gatehouse.ECodeUnauthenticated, gatehouse.ECodeForbidden, gatehouse.ECodeNotFound, gatehouse.ECodeConflict, gatehouse.ECodeInternal}},
					"field":   object{"type": "string", "description": "the request field the error concerns, like secret.arn or rules[0].users"},
					"message": object{"type": "string"},
				},
			}},
		},
	}
	paths := object{}
	for _, rt := range a.documented {
		op := object{
			"operationId": operationID(rt),
			"summary":     rt.Summary,
			"tags":        []string{tag(rt.Path)},
		}
		switch rt.Access {
		case public:
			op["security"] = []any{}
		case sidecarAuth:
			op["security"] = []any{object{"sidecarJWT": []string{}}}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			typ := "string"
			if m[1] == "port" {
				typ = "integer"
			}
			params = append(params, object{"name": m[1], "in": "path", "required": true, "schema": object{"type": typ}})
		}
		for _, name := range sortedKeys(rt.Query) {
			params = append(params, object{"name": name, "in": "query", "description": rt.Query[name], "schema": object{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			op["requestBody"] = object{"required": true, "content": object{"application/json": object{"schema": schemaOf(reflect.TypeOf(rt.Request), schemas)}}}
		}
		success := object{"description": http.StatusText(rt.Status)}
		if rt.Response != nil {
			success["content"] = object{"application/json": object{"schema": schemaOf(reflect.TypeOf(rt.Response), schemas)}}
		}
		op["responses"] = object{
			strconv.Itoa(rt.Status): success,
			"default":               object{"description": "an error", "content": object{"application/json": object{"schema": object{"$ref": "#/components/schemas/Error"}}}},
		}
		item, _ := paths[rt.Path].(object)
		if item == nil {
			item = object{}
			paths[rt.Path] = item
		}
		item[strings.ToLower(rt.Method)] = op
	}
	doc := object{
		"openapi": "3.0.3",
		"info": object{
			"title":       "Gatehouse control plane API",
			"version":     "1",
			"description": "Sign in with POST /api/v1/login and send the token as Authorization: Bearer TOKEN. Request bodies are decoded strictly: unknown fields are refused.",
		},
		"paths":    paths,
		"security": []any{object{"bearer": []string{}}},
		"components": object{"schemas": schemas, "securitySchemes": object{
			"bearer":     object{"type": "http", "scheme": "bearer", "description": "a session token from POST /api/v1/login"},
			"sidecarJWT": object{"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a JWT the sidecar signs with its registered RSA key"},
		}},
	}
	if a.publicURL != "" {
		doc["servers"] = []any{object{"url": a.publicURL}}
	}
	return doc
}

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.openAPIDocument())
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.Split(strings.TrimPrefix(rt.Path, "/api/v1/"), "/") {
		if strings.HasPrefix(part, "{") {
			part = "by-" + strings.Trim(part, "{}")
		}
		for _, word := range strings.FieldsFunc(part, func(r rune) bool { return r == '-' || r == '.' || r == '_' }) {
			rs := []rune(word)
			rs[0] = unicode.ToUpper(rs[0])
			b.WriteString(string(rs))
		}
	}
	return b.String()
}

func tag(path string) string {
	part, _, _ := strings.Cut(strings.TrimPrefix(path, "/api/v1/"), "/")
	return part
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var timeType = reflect.TypeFor[time.Time]()

// readOnly names the fields the server assigns; requests may carry them (a GET answer sent back
// with PUT) but they are ignored.
var readOnly = map[string]bool{
	"id": true, "created_at": true, "updated_at": true, "revoked_at": true, "owner": true,
	"sidecar_id": true, "groups": true, "control_plane_url": true, "token": true,
}

// schemaOf returns the JSON schema of t, adding named struct types to schemas and referring to them.
func schemaOf(t reflect.Type, schemas object) object {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return object{"type": "string", "format": "date-time"}
	}
	if vals, ok := enums[t]; ok {
		return object{"type": "string", "enum": vals}
	}
	switch t.Kind() {
	case reflect.String:
		return object{"type": "string"}
	case reflect.Bool:
		return object{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return object{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return object{"type": "number"}
	case reflect.Slice, reflect.Array:
		return object{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case reflect.Map:
		return object{"type": "object", "additionalProperties": true}
	case reflect.Struct:
		name := schemaName(t)
		if _, ok := schemas[name]; !ok {
			schemas[name] = object{} // placeholder against recursion
			props := object{}
			for _, f := range jsonFields(t) {
				sch := schemaOf(f.Type, schemas)
				if readOnly[f.Name] {
					if _, isRef := sch["$ref"]; isRef {
						sch = object{"allOf": []any{sch}}
					}
					sch["readOnly"] = true
				}
				if f.Name == "password" && t != reflect.TypeFor[loginRequest]() {
					sch["writeOnly"] = true
				}
				props[f.Name] = sch
			}
			schemas[name] = object{"type": "object", "additionalProperties": false, "properties": props}
		}
		return object{"$ref": "#/components/schemas/" + name}
	}
	return object{}
}

// schemaName names a schema after its Go type: Repository, SidecarResponse, TokenRequest.
func schemaName(t reflect.Type) string {
	rs := []rune(t.Name())
	if len(rs) == 0 {
		return "Object"
	}
	rs[0] = unicode.ToUpper(rs[0])
	return string(rs)
}
