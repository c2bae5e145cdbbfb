// Package web is the control plane's web console: server-rendered pages (html/template) and a
// little progressive JavaScript, all embedded in the binary, served at "/" by gatehouse server.
//
// The console holds no business rules of its own. Every page and every form post becomes an
// in-process call to the REST API's http.Handler, made with the signed-in user's API session
// token, so the console applies exactly the API's validation, authorisation and error messages:
//
//	browser ──form post──▶ Console ──http.Request (Bearer ghs_…)──▶ API handler ──▶ store
//	        ◀──HTML page── Console ◀──JSON or {"error":{"code","field","message"}}──┘
//
// An API error naming a field is shown next to that form field; a 403 becomes the 403 page. Edit
// pages are prefilled from the API's GET and saved with one PATCH (PUT for a repository user's
// secret), so a refused edit changes nothing.
//
// The browser session is a cookie holding the API session token (HttpOnly, SameSite=Lax, Secure
// when served over HTTPS) with a sliding idle lifetime; the API enforces the absolute one. Every
// state-changing form carries a CSRF token derived from the session token, and every response
// carries a content security policy without inline script, frame-ancestors 'none' and the usual
// headers. The package imports only the root package: it reaches everything else through the API.
package web
