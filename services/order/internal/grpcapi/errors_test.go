package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A database that stays away longer than CreateOrder retries (connection lost, read-only
// during a failover) is UNAVAILABLE for the client, which may retry with the same request_id;
// anything unexpected stays INTERNAL.
func TestStorageErrorsMapToTheirStatus(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"read-only database", fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "25006"}), codes.Unavailable},
		{"connection lost", fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "08006"}), codes.Unavailable},
		{"constraint violated", fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "23514"}), codes.Internal},
	} {
		if got := status.Code(s.error(context.Background(), tc.err)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
