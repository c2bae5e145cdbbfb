// Package azureemu is an in-process HTTPS emulator of the Azure endpoints Gatehouse's Azure
// sources reach, for tests that drive the real Azure SDK (azsecrets, azidentity) against it. It
// imports only the standard library, so end-to-end tests can use it without the SDK. It serves
// HTTPS because the Key Vault client refuses plain HTTP; clients trust it through Client() or
// Certificate(), and must set DisableChallengeResourceVerification (the vault is 127.0.0.1, not
// *.vault.azure.net) and skip instance discovery (the authority is not a known Entra host).
//
// What it checks:
//
//   - Key Vault Get Secret (GET /secrets/{name}[/{version}]?api-version=...): an unauthenticated
//     request is answered 401 with a WWW-Authenticate bearer challenge naming the tenant and
//     https://vault.azure.net; a bearer token must be one this emulator issued, for that
//     resource, unexpired; the token's principal must hold "Key Vault Secrets User" on the secret
//     or vault (Grant), else 403 Forbidden/ForbiddenByRbac; unknown names or versions are 404
//     SecretNotFound; disabled versions are 403 SecretDisabled.
//   - Entra token endpoint (POST /{tenant}/oauth2/v2.0/token, client_credentials): the client ID
//     must be registered (AddApp) and the client secret must match (AADSTS7000215 otherwise); the
//     scope must be RESOURCE/.default. OpenID discovery is served at
//     /{tenant}/v2.0/.well-known/openid-configuration.
//   - Managed identity, App Service flavour (GET IdentityEndpoint()?api-version=2019-08-01): the
//     X-IDENTITY-HEADER must match; a client_id must be an attached user-assigned identity, and
//     without one the system-assigned identity must be enabled.
//
// What it does not check or do: tokens are opaque strings, not signed JWTs (no issuer, audience,
// signature or claims validation by the vault); client certificate, federated (workload identity)
// and Azure CLI credentials; the VM IMDS managed identity endpoint (169.254.169.254), Azure Arc
// and Service Fabric; Azure RBAC beyond one role per principal and secret-name pattern (no deny
// assignments, scopes above the vault, propagation delay) and the legacy access-policy model;
// network ACLs, private endpoints and firewalls; soft delete, secret expiry/not-before dates,
// content types and managed HSM; throttling (429). MSAL caches managed identity tokens per process,
// so tests that restart the emulator should use distinct identities.
package azureemu
