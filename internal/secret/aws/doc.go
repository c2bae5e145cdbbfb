// Package aws holds the AWS secret sources of a sidecar — "aws-secrets-manager" (GetSecretValue
// by ARN, with an optional JSON dot-path) and "aws-rds-iam" (RDS IAM authentication tokens) —
// and the AWS identity they use. It is the only package that imports the AWS SDK and the IAM
// Roles Anywhere credential helper.
//
// One Client per sidecar resolves the identity once, in the SDK's default chain order, unless
// Roles Anywhere is configured:
//
//  1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN)
//  2. shared files: the profile Config.Profile, else AWS_PROFILE, else "default", from
//     AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE (~/.aws/credentials, ~/.aws/config);
//     a profile may itself assume a role, use SSO or a credential_process
//  3. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA), via STS
//  4. ECS / EKS Pod Identity container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
//     _FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
//  5. EC2 instance profile over IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address)
//
// With Config.RolesAnywhere, an X.509 certificate and its private key (PEM files or a PKCS#11
// token such as SoftHSM2) are exchanged for temporary credentials through
// rolesanywhere-credential-helper's GetSigner and GenerateCredentials. Temporary credentials of
// any kind are cached and refreshed ExpiryWindow before they expire (aws.CredentialsCache).
//
//	Resolver ──Fetch(ref, target)──▶ SecretsManager ──GetSecretValue(ARN, stage) in the ARN's region
//	                                 RDSIAM ──BuildAuthToken(host:port, region, user), local signing
//	            both sign with Client's credentials ◀── default chain | Roles Anywhere CreateSession
//
// Errors say what failed and what to fix — *CredentialsError when the sidecar has no usable AWS
// identity, *APIError with the service's code (AccessDeniedException, ResourceNotFoundException)
// when a call is refused — and never contain a secret's value. The Resolver in front names the
// reference.
//
// awsemu, next to this package, emulates the AWS endpoints for tests.
package aws
