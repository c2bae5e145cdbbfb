// Package azure holds the Azure secret sources of a sidecar — "azure-key-vault" (a secret by
// vault URI, name and optional version) and "azure-entra" (a Microsoft Entra access token for
// Azure Database for PostgreSQL / MySQL, scope OSSRDBMSScope) — and the Azure identity they use.
// It is the only package that imports the Azure SDK.
//
// One Client per sidecar authenticates with azidentity's DefaultAzureCredential, which tries in
// order: environment (AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET, or
// AZURE_CLIENT_CERTIFICATE_PATH), workload identity (AZURE_FEDERATED_TOKEN_FILE, on AKS),
// managed identity (system-assigned, or user-assigned selected by AZURE_CLIENT_ID; on VMs through
// IMDS, on App Service/Functions/Container Apps through IDENTITY_ENDPOINT + IDENTITY_HEADER), the
// Azure CLI and the Azure Developer CLI. AZURE_TOKEN_CREDENTIALS narrows the chain. Tokens are
// cached by the SDK and renewed before they expire.
//
//	Resolver ──Fetch──▶ KeyVault ──GET {vault}/secrets/{name}/{version}──▶ 401 challenge
//	                                   └─ token for https://vault.azure.net ──▶ retry with Bearer
//	                    Entra ──token for https://ossrdbms-aad.database.windows.net/.default
//
// Errors are *CredentialError when the sidecar has no usable Azure identity and *APIError with Key
// Vault's code (SecretNotFound, Forbidden/ForbiddenByRbac) when the vault refuses; they never
// contain a secret's value. The Resolver in front names the reference.
//
// azureemu, next to this package, emulates the endpoints for tests.
package azure
