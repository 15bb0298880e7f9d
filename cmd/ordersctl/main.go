// Command ordersctl is the operator's tool for a running ordersaga: it lists, inspects and
// replays dead letters and audits the saga's invariants across the services' databases.
// Run "ordersctl help" for usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ordersaga/ordersaga/internal/ops"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := ops.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
