// Package controlplane wires and runs the `gatehouse server` process: it opens the store (SQLite in
// the data directory, or PostgreSQL), lets the store migrate its schema, bootstraps the first
// administrator, binds the listener and serves the API until its context ends.
//
//	New(ctx, cfg)  open store → migrate → bootstrap admin → listen
//	Run(ctx)       serve until ctx is done → graceful shutdown
//	Close()        stop serving, close the store
//
// It is the wiring layer: it may import every adapter (store, api, auth) and nothing imports it but
// the CLI and end-to-end tests.
package controlplane
