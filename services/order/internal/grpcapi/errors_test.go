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
	bounded, cancel := context.WithTimeoutCause(context.Background(), 0, errCreateTimeout)
	defer cancel()
	callers, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{"server's bound", bounded, errCreateTimeout, codes.Unavailable},
		{"server's bound in a round trip", bounded, fmt.Errorf("select order: %w", context.DeadlineExceeded), codes.Unavailable},
		{"caller's deadline", callers, context.DeadlineExceeded, codes.DeadlineExceeded},
		{"caller's deadline in a round trip", callers, fmt.Errorf("select order: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"read-only database", nil, fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "25006"}), codes.Unavailable},
		{"connection lost", nil, fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "08006"}), codes.Unavailable},
		{"constraint violated", nil, fmt.Errorf("insert orders: %w", &pgconn.PgError{Code: "23514"}), codes.Internal},
	} {
		ctx := tc.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		if got := status.Code(s.error(ctx, tc.err)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
