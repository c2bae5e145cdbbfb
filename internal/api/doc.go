// Package api serves the control plane's REST+JSON API under /api/v1: repositories and their
// users, sidecars with their listener ports and bindings, impersonation policies, users, groups,
// access tokens, settings, login sessions, the data consumer's connection info, and the OpenAPI
// document that describes all of it (GET /api/v1/openapi.json).
//
// Every route is one row of the table in routes.go; the ServeMux and the OpenAPI document are both
// built from it, and a test checks they agree. Each row says who may call it: anyone (login, the
// OpenAPI document), any signed-in user, or admins only (data consumers get 403).
//
// Request bodies are decoded strictly: at most 1 MiB, exactly one JSON object, no unknown fields.
// An unknown field is a 400 naming it ("secret.password"), so a credential pasted into a secret
// reference is refused and never stored. Validation uses the root package's Normalize/Validate, so
// errors name the field and the rule. Errors are {"error":{"code","field","message"}} with the
// codes of gatehouse.Error mapped to 400/401/403/404/409; anything else is a 500 with a generic
// message, the real error going to the log.
//
// Fields the server assigns — id, created_at, updated_at, revoked_at, a user's groups, and the
// parent taken from the path (a repository user's repository, a port's sidecar_id) — are ignored
// when a body carries them, so a GET response can be edited and sent back with PUT. An object's
// own key (name, username, port) in a PUT or PATCH body must match the path or be left out:
// renames are refused. PUT replaces the object; PATCH changes only the top-level fields present.
// DELETE answers 204; where dependents would block it, ?cascade=true deletes them too.
//
// Persistence is the Store interface (store.go), implemented by internal/store.
package api
