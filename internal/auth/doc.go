// Package auth decides who is calling the control plane's API.
//
// It owns local users' passwords (bcrypt), login sessions (POST /api/v1/login answers a bearer
// secret "ghs_" + base62 that is stored only as its SHA-256 and expires after SessionTTL), the
// Authorization: Bearer check every API call goes through, and the bootstrap of the first
// administrator. Access tokens ("gh1_...") are database passwords for sidecars, never API
// credentials: Authenticate refuses them with a message that says so. OIDC and the sidecar JWT
// check (files sidecar*.go) live here too.
//
// The package defines the slice of persistence it needs (Store); internal/store implements it and
// internal/controlplane wires the two.
package auth
