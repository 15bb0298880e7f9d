package server

import (
	"log/slog"
	"os"

	"github.com/ordersaga/ordersaga/pkg/config"
)

// Logger returns the service's JSON logger on stdout, at the level of LOG_LEVEL (default info),
// with every line carrying the service's name.
func Logger(service string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(config.String("LOG_LEVEL", "info"))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("service", service)
}
