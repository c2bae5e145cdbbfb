// Package secret resolves repository users' credentials on the sidecar. A Resolver sits in front of
// the secret sources (env, file, and the cloud ones in aws and azure), one per
// gatehouse.SecretSource, wired by the caller (internal/sidecar).
//
//   - It caches each credential in memory for a TTL (DefaultTTL), or until an ExpiringSource's
//     expiry less a margin (DefaultExpiryMargin), whichever comes first.
//   - It fetches at most once per miss (singleflight); the fetch runs on its own timeout, not on the
//     first caller's context.
//   - It drops an entry when the database rejects it (Invalidate), so the next session fetches it
//     again; a dropped value is never used again.
//   - When a source is unreachable (Transient: a network error, a timeout, HTTP 5xx or 429) it keeps
//     serving the last good value for a grace period past its TTL (DefaultGracePeriod), never past a
//     token's expiry. Refusals (access denied, not found, a bad JSON path) are returned at once.
//   - It keeps the last failure per reference (Health) for the sidecar's instance report.
//
// Credentials are carried as gatehouse.Credential, which redacts itself. Errors name the reference
// (SecretRef.String()) and the cause, never the value, and nothing here logs a value.
//
//	engine ──Credential(Target)──▶ Resolver ──fresh hit──▶ cached gatehouse.Credential
//	                                  │ miss (one fetch per key, others wait)
//	                                  └──Sources[ref.Source].Fetch / FetchWithExpiry(ref, Target)
//	                                        └─ unreachable? last good value while in grace
package secret
