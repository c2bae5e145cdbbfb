// Package awsemu is an in-process emulator of the AWS endpoints Gatehouse's AWS secret sources
// call, for tests that drive the real AWS SDK clients against it. It imports only the standard
// library, so end-to-end tests can use it without the SDK.
//
// What it checks, as AWS does:
//
//   - Secrets Manager GetSecretValue (JSON 1.1 protocol, X-Amz-Target): the SigV4 signature over
//     the canonical request (method, path, query, every signed header, SHA-256 of the body) with
//     the secret key of the access key in the credential scope; the scope's service
//     (secretsmanager), date and a ±5 minute clock skew; the session token of temporary keys and
//     their expiry; that the scope's region is the ARN's region; that the caller's principal was
//     allowed the secret (Allow, a Resource pattern with '*'); secret existence, version stages
//     (AWSCURRENT by default) and version IDs; SecretString vs SecretBinary. Errors carry the
//     service's codes: UnrecognizedClientException, InvalidSignatureException,
//     ExpiredTokenException, AccessDeniedException, ResourceNotFoundException.
//   - IAM Roles Anywhere CreateSession (POST /sessions): the SigV4-X509 signature
//     (AWS4-X509-RSA-SHA256 / -ECDSA-SHA256) with the public key of the certificate in
//     X-Amz-X509, whose serial must be the credential's; the certificate chain (X-Amz-X509-Chain)
//     to the trust anchor's CA; the validity period at Now (an expired certificate is refused);
//     the digitalSignature key usage and X.509 v3; the trust anchor and profile ARNs, and that the
//     profile includes the role; durationSeconds 900..43200. Sessions never outlive the
//     certificate.
//   - STS AssumeRoleWithWebIdentity (query protocol): the token must be one registered with
//     AddWebIdentityToken for that role.
//   - ECS container credentials (GET ECSPath): the Authorization header must be the configured
//     token.
//   - RDS IAM tokens (VerifyRDSAuthToken): the presigned SigV4 URL for host:port, Action=connect,
//     DBUser, service rds-db and region, X-Amz-Expires ≤ 900 s and not past, signed by a known
//     key.
//
// What it does not check or do: the IAM policy language (conditions, Deny, NotResource,
// resource policies, SCPs, permission boundaries — Allow is a list of ARN patterns per
// principal, and a role's temporary credentials carry the role's grants); KMS (kms:Decrypt on
// the secret's key); throttling and quotas; secret rotation, deletion, replicas and names given
// without the ARN's random suffix; Roles Anywhere CRLs, certificate revocation, the role's trust
// policy and its aws:SourceArn / x509 PrincipalTag conditions, session policies and attribute
// mappings; the JWT signature, issuer, audience and expiry of web identity tokens; rds-db:connect
// permissions and whether an RDS instance has IAM authentication enabled; request paths other
// than "/" and "/sessions" (canonical URI encoding is only exercised there); chunked/streaming
// SigV4 and SigV4a.
package awsemu
