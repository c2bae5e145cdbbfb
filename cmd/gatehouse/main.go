// Command gatehouse is the one Gatehouse binary: control plane, sidecar and CLI. Everything it does
// lives in internal/cli; main only wires the process's signals and standard streams to it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehousedb/gatehouse/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
