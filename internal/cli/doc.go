// Package cli is the gatehouse command line: the cobra command tree for `gatehouse server`, the
// sidecar commands, login and every admin and data-consumer command. It is the only package that
// parses flags or reads the environment for configuration.
//
// It sits at the top of the import graph: it wires internal/controlplane (and, through
// sidecar_run.go, internal/sidecar) and talks to a running control plane over its REST API with
// a small client of its own, so the CLI exercises exactly what any other API client sees.
//
// NewCommand builds the whole tree with injected streams and environment, so tests can run the
// binary in-process; Main runs it and turns the outcome into an exit code: 0 success, 1 an error
// from the control plane or the system, 2 a usage error.
package cli
