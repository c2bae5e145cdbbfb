package api

import (
	"net/http"

	"github.com/gatehousedb/gatehouse"
)

// access says who may call a route.
type access int

const (
	public        access = iota // anyone
	authenticated               // any signed-in user
	adminOnly                   // signed-in admins; data consumers get 403
	sidecarAuth                 // sidecars: the handler checks the sidecar's signed JWT itself
)

// route is one API endpoint. The ServeMux and the OpenAPI document are both built from routes(), so
// they cannot drift apart.
type route struct {
	Method, Path string
	Access       access
	Summary      string
	Request      any               // zero value of the body type; nil when there is none
	Response     any               // zero value of the success body; nil for 204
	Status       int               // success status
	Query        map[string]string // query parameters: name -> description
	handle       http.HandlerFunc
}

var cascadeQuery = map[string]string{"cascade": "true deletes the objects that depend on this one too; otherwise a delete they would block is refused (409) with a list of them"}

// routes is the API's route table.
func (a *API) routes() []route {
	return []route{
		{Method: "GET", Path: "/api/v1/openapi.json", Access: public, Summary: "This OpenAPI document", Response: map[string]any{}, Status: 200, handle: a.openAPI},
		{Method: "POST", Path: "/api/v1/login", Access: public, Summary: "Sign in as a local user; the token is the bearer for every other call", Request: loginRequest{}, Response: loginResponse{}, Status: 200, handle: a.login},
		{Method: "POST", Path: "/api/v1/logout", Access: authenticated, Summary: "End the calling session", Status: 204, handle: a.logout},
		{Method: "GET", Path: "/api/v1/me", Access: authenticated, Summary: "The signed-in user, with the effective role", Response: gatehouse.User{}, Status: 200, handle: a.me},

		{Method: "GET", Path: "/api/v1/settings", Access: adminOnly, Summary: "Control-plane settings", Response: settings{}, Status: 200, handle: a.getSettings},
		{Method: "PUT", Path: "/api/v1/settings", Access: adminOnly, Summary: "Change control-plane settings (fields left out keep their value)", Request: settings{}, Response: settings{}, Status: 200, handle: a.putSettings},

		{Method: "POST", Path: "/api/v1/repositories", Access: adminOnly, Summary: "Register a repository", Request: gatehouse.Repository{}, Response: gatehouse.Repository{}, Status: 201, handle: a.createRepository},
		{Method: "GET", Path: "/api/v1/repositories", Access: adminOnly, Summary: "List repositories", Response: []gatehouse.Repository{}, Status: 200, handle: a.listRepositories},
		{Method: "GET", Path: "/api/v1/repositories/{name}", Access: adminOnly, Summary: "Get a repository", Response: gatehouse.Repository{}, Status: 200, handle: a.getRepository},
		{Method: "PUT", Path: "/api/v1/repositories/{name}", Access: adminOnly, Summary: "Replace a repository", Request: gatehouse.Repository{}, Response: gatehouse.Repository{}, Status: 200, handle: a.updateRepository},
		{Method: "PATCH", Path: "/api/v1/repositories/{name}", Access: adminOnly, Summary: "Change some fields of a repository", Request: gatehouse.Repository{}, Response: gatehouse.Repository{}, Status: 200, handle: a.updateRepository},
		{Method: "DELETE", Path: "/api/v1/repositories/{name}", Access: adminOnly, Summary: "Delete a repository and its users", Query: cascadeQuery, Status: 204, handle: a.deleteRepository},

		{Method: "POST", Path: "/api/v1/repositories/{name}/users", Access: adminOnly, Summary: "Register a repository user (a secret reference, never the secret)", Request: gatehouse.RepositoryUser{}, Response: gatehouse.RepositoryUser{}, Status: 201, handle: a.createRepositoryUser},
		{Method: "GET", Path: "/api/v1/repositories/{name}/users", Access: adminOnly, Summary: "List a repository's users", Response: []gatehouse.RepositoryUser{}, Status: 200, handle: a.listRepositoryUsers},
		{Method: "GET", Path: "/api/v1/repositories/{name}/users/{username}", Access: adminOnly, Summary: "Get a repository user", Response: gatehouse.RepositoryUser{}, Status: 200, handle: a.getRepositoryUser},
		{Method: "PUT", Path: "/api/v1/repositories/{name}/users/{username}", Access: adminOnly, Summary: "Replace a repository user's secret reference", Request: gatehouse.RepositoryUser{}, Response: gatehouse.RepositoryUser{}, Status: 200, handle: a.updateRepositoryUser},
		{Method: "PATCH", Path: "/api/v1/repositories/{name}/users/{username}", Access: adminOnly, Summary: "Change some fields of a repository user", Request: gatehouse.RepositoryUser{}, Response: gatehouse.RepositoryUser{}, Status: 200, handle: a.updateRepositoryUser},
		{Method: "DELETE", Path: "/api/v1/repositories/{name}/users/{username}", Access: adminOnly, Summary: "Delete a repository user", Query: cascadeQuery, Status: 204, handle: a.deleteRepositoryUser},

		{Method: "POST", Path: "/api/v1/sidecars", Access: adminOnly, Summary: "Register a sidecar; the answer carries its id and the control-plane URL", Request: gatehouse.Sidecar{}, Response: sidecarResponse{}, Status: 201, handle: a.createSidecar},
		{Method: "GET", Path: "/api/v1/sidecars", Access: adminOnly, Summary: "List sidecars", Response: []sidecarResponse{}, Status: 200, handle: a.listSidecars},
		{Method: "GET", Path: "/api/v1/sidecars/{id}", Access: adminOnly, Summary: "Get a sidecar", Response: sidecarResponse{}, Status: 200, handle: a.getSidecar},
		{Method: "PUT", Path: "/api/v1/sidecars/{id}", Access: adminOnly, Summary: "Replace a sidecar", Request: gatehouse.Sidecar{}, Response: sidecarResponse{}, Status: 200, handle: a.updateSidecar},
		{Method: "PATCH", Path: "/api/v1/sidecars/{id}", Access: adminOnly, Summary: "Change some fields of a sidecar (e.g. add a second public key)", Request: gatehouse.Sidecar{}, Response: sidecarResponse{}, Status: 200, handle: a.updateSidecar},
		{Method: "DELETE", Path: "/api/v1/sidecars/{id}", Access: adminOnly, Summary: "Delete a sidecar", Query: cascadeQuery, Status: 204, handle: a.deleteSidecar},

		{Method: "POST", Path: "/api/v1/sidecars/{id}/ports", Access: adminOnly, Summary: "Register a listener port", Request: gatehouse.ListenerPort{}, Response: gatehouse.ListenerPort{}, Status: 201, handle: a.createPort},
		{Method: "GET", Path: "/api/v1/sidecars/{id}/ports", Access: adminOnly, Summary: "List a sidecar's listener ports", Response: []gatehouse.ListenerPort{}, Status: 200, handle: a.listPorts},
		{Method: "GET", Path: "/api/v1/sidecars/{id}/ports/{port}", Access: adminOnly, Summary: "Get a listener port", Response: gatehouse.ListenerPort{}, Status: 200, handle: a.getPort},
		{Method: "PUT", Path: "/api/v1/sidecars/{id}/ports/{port}", Access: adminOnly, Summary: "Replace a listener port's type and version", Request: gatehouse.ListenerPort{}, Response: gatehouse.ListenerPort{}, Status: 200, handle: a.updatePort},
		{Method: "PATCH", Path: "/api/v1/sidecars/{id}/ports/{port}", Access: adminOnly, Summary: "Change some fields of a listener port", Request: gatehouse.ListenerPort{}, Response: gatehouse.ListenerPort{}, Status: 200, handle: a.updatePort},
		{Method: "DELETE", Path: "/api/v1/sidecars/{id}/ports/{port}", Access: adminOnly, Summary: "Delete a listener port", Query: cascadeQuery, Status: 204, handle: a.deletePort},

		{Method: "POST", Path: "/api/v1/sidecars/{id}/bindings", Access: adminOnly, Summary: "Bind a listener port to a repository", Request: gatehouse.Binding{}, Response: gatehouse.Binding{}, Status: 201, handle: a.createBinding},
		{Method: "GET", Path: "/api/v1/sidecars/{id}/bindings", Access: adminOnly, Summary: "List a sidecar's bindings", Response: []gatehouse.Binding{}, Status: 200, handle: a.listBindings},
		{Method: "GET", Path: "/api/v1/sidecars/{id}/bindings/{port}/{repository}", Access: adminOnly, Summary: "Get a binding", Response: gatehouse.Binding{}, Status: 200, handle: a.getBinding},
		{Method: "DELETE", Path: "/api/v1/sidecars/{id}/bindings/{port}/{repository}", Access: adminOnly, Summary: "Delete a binding", Status: 204, handle: a.deleteBinding},

		{Method: "POST", Path: "/api/v1/impersonation-policies", Access: adminOnly, Summary: "Create an impersonation policy", Request: gatehouse.ImpersonationPolicy{}, Response: gatehouse.ImpersonationPolicy{}, Status: 201, handle: a.createPolicy},
		{Method: "GET", Path: "/api/v1/impersonation-policies", Access: adminOnly, Summary: "List impersonation policies", Query: map[string]string{"repository": "only the policies of this repository"}, Response: []gatehouse.ImpersonationPolicy{}, Status: 200, handle: a.listPolicies},
		{Method: "GET", Path: "/api/v1/impersonation-policies/{name}", Access: adminOnly, Summary: "Get an impersonation policy", Response: gatehouse.ImpersonationPolicy{}, Status: 200, handle: a.getPolicy},
		{Method: "PUT", Path: "/api/v1/impersonation-policies/{name}", Access: adminOnly, Summary: "Replace an impersonation policy", Request: gatehouse.ImpersonationPolicy{}, Response: gatehouse.ImpersonationPolicy{}, Status: 200, handle: a.updatePolicy},
		{Method: "PATCH", Path: "/api/v1/impersonation-policies/{name}", Access: adminOnly, Summary: "Change some fields of an impersonation policy", Request: gatehouse.ImpersonationPolicy{}, Response: gatehouse.ImpersonationPolicy{}, Status: 200, handle: a.updatePolicy},
		{Method: "DELETE", Path: "/api/v1/impersonation-policies/{name}", Access: adminOnly, Summary: "Delete an impersonation policy", Status: 204, handle: a.deletePolicy},

		{Method: "POST", Path: "/api/v1/users", Access: adminOnly, Summary: "Create a local user (password is write-only)", Request: userRequest{}, Response: gatehouse.User{}, Status: 201, handle: a.createUser},
		{Method: "GET", Path: "/api/v1/users", Access: adminOnly, Summary: "List users", Response: []gatehouse.User{}, Status: 200, handle: a.listUsers},
		{Method: "GET", Path: "/api/v1/users/{name}", Access: adminOnly, Summary: "Get a user", Response: gatehouse.User{}, Status: 200, handle: a.getUser},
		{Method: "PUT", Path: "/api/v1/users/{name}", Access: adminOnly, Summary: "Replace a user (a password field sets the password)", Request: userRequest{}, Response: gatehouse.User{}, Status: 200, handle: a.updateUser},
		{Method: "PATCH", Path: "/api/v1/users/{name}", Access: adminOnly, Summary: "Change some fields of a user", Request: userRequest{}, Response: gatehouse.User{}, Status: 200, handle: a.updateUser},
		{Method: "DELETE", Path: "/api/v1/users/{name}", Access: adminOnly, Summary: "Delete a user, revoking their tokens and sessions", Status: 204, handle: a.deleteUser},

		{Method: "POST", Path: "/api/v1/groups", Access: adminOnly, Summary: "Create a group", Request: gatehouse.Group{}, Response: gatehouse.Group{}, Status: 201, handle: a.createGroup},
		{Method: "GET", Path: "/api/v1/groups", Access: adminOnly, Summary: "List groups", Response: []gatehouse.Group{}, Status: 200, handle: a.listGroups},
		{Method: "GET", Path: "/api/v1/groups/{name}", Access: adminOnly, Summary: "Get a group", Response: gatehouse.Group{}, Status: 200, handle: a.getGroup},
		{Method: "PUT", Path: "/api/v1/groups/{name}", Access: adminOnly, Summary: "Replace a group (members are replaced)", Request: gatehouse.Group{}, Response: gatehouse.Group{}, Status: 200, handle: a.updateGroup},
		{Method: "PATCH", Path: "/api/v1/groups/{name}", Access: adminOnly, Summary: "Change some fields of a group", Request: gatehouse.Group{}, Response: gatehouse.Group{}, Status: 200, handle: a.updateGroup},
		{Method: "DELETE", Path: "/api/v1/groups/{name}", Access: adminOnly, Summary: "Delete a group", Status: 204, handle: a.deleteGroup},

		{Method: "POST", Path: "/api/v1/tokens", Access: authenticated, Summary: "Create an access token for yourself; the secret is in the answer only", Request: tokenRequest{}, Response: tokenCreated{}, Status: 201, handle: a.createToken},
		{Method: "GET", Path: "/api/v1/tokens", Access: authenticated, Summary: "List your access tokens (admins: everyone's)", Query: map[string]string{"owner": "admins: only this user's tokens"}, Response: []gatehouse.AccessToken{}, Status: 200, handle: a.listTokens},
		{Method: "GET", Path: "/api/v1/tokens/{id}", Access: authenticated, Summary: "Get one of your access tokens (admins: anyone's)", Response: gatehouse.AccessToken{}, Status: 200, handle: a.getToken},
		{Method: "DELETE", Path: "/api/v1/tokens/{id}", Access: authenticated, Summary: "Revoke an access token (yours; admins: anyone's)", Status: 204, handle: a.revokeToken},

		{Method: "GET", Path: "/api/v1/connections", Access: authenticated, Summary: "What to type into a SQL client for each repository user you may impersonate", Query: map[string]string{"user": "admins: the connections of this user instead"}, Response: []gatehouse.Connection{}, Status: 200, handle: a.connections},
	}
}
