package server

import (
	"log/slog"
	"os"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Logger returns the service's JSON logger on stdout, at cfg's level, with every line carrying
// the service's name.
func Logger(service string, cfg config.Log) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: cfg.Level})).With("service", service)
}
