// Package scim is Gatehouse's SCIM 2.0 service provider (RFC 7643, RFC 7644) at /scim/v2: the
// endpoint an identity provider's provisioning (Okta, Entra ID, ...) creates, updates, deactivates
// and deletes users and groups through.
//
// What it serves: /ServiceProviderConfig, /ResourceTypes, /Schemas, and /Users and /Groups with
// create, get, list (filter `userName eq "..."` / `displayName eq "..."`, startIndex and count
// pagination), replace (PUT), PATCH (add, remove and replace of members, active and the simple
// attributes) and delete. Every request carries a bearer token made with `gatehouse scim token
// create`; only its SHA-256 is stored.
//
// Mapping: a SCIM User is a Gatehouse user whose id and userName are the user name (renaming is
// refused); a SCIM Group is a Gatehouse group whose id and displayName are the group name. Local
// users (those with a password, such as the break-glass "admin") are invisible here, so
// provisioning can never change or delete them. Deactivating a user (active=false) revokes their
// access tokens and ends their sessions; sidecars drop the tokens, and end the live database
// sessions, at their next sync. Removing a user from a group takes that group's impersonations
// away the same way.
//
// It sits with the other adapters (layer 2): internal/controlplane mounts Handler next to the API.
package scim
