// Package syncapi is the contract between a sidecar and the control plane, shared by both sides:
// the versioned Snapshot a sidecar runs on, the Report an instance sends about itself, the routes
// that carry them, the JWT every sidecar request is signed with, and the sidecar's Client.
//
// All traffic is started by the sidecar:
//
//	sidecar instance                                   control plane
//	  │ GET  /api/v1/sidecar/config?since=N&wait=25s ──▶  200 Snapshot (Version > N)
//	  │                                              ◀──  304 when nothing changed before wait ran out
//	  │ POST /api/v1/sidecar/report  (Report)        ──▶  204; records the instance (last seen = now)
//	  │ GET  /api/v1/sidecar/tokens/{sha256-hex}     ──▶  200 TokenLookup | 404 (not an active token)
//
// Every request carries "Authorization: Bearer <JWT>", RS256 (PS256 is accepted too), signed with
// the sidecar's RSA private key: iss = sidecar ID, sub = instance ID, aud = control-plane URL,
// iat, exp (at most MaxTokenLifetime after iat) and a random jti that the control plane accepts
// once. The control plane answers only with the calling sidecar's own configuration: the sidecar
// ID comes from the verified token, never from the URL.
//
// A Snapshot carries secret references, never secrets, and token verifiers (SHA-256 of the
// secret), never tokens.
package syncapi
