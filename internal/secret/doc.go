// Package secret resolves repository users' credentials on the sidecar. A Resolver sits in front of
// the secret sources (env, file, and later the cloud ones), one per gatehouse.SecretSource, wired by
// the caller; it caches each credential in memory for a TTL, fetches at most once per miss
// (singleflight), and drops an entry when the database rejects it (Invalidate), so the next session
// fetches it again.
//
// Credentials are carried as gatehouse.Credential, which redacts itself. Errors name the reference
// (SecretRef.String()), never the value, and nothing here logs a value.
//
//	engine ──Credential(Target)──▶ Resolver ──hit──▶ cached gatehouse.Credential
//	                                  │ miss (one fetch per key, others wait)
//	                                  └──Sources[ref.Source].Fetch(ref, Target)
package secret
