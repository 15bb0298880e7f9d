package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ordersaga/ordersaga/pkg/server"
)

// gRPC health follows readiness: NOT_SERVING while a dependency is away, SERVING once it is
// back, NOT_SERVING when the service stops.
func TestGRPCHealthFollowsReadiness(t *testing.T) {
	t.Parallel()
	hs := health.NewServer()
	const svc = "test.v1.Service"
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	var away atomic.Bool
	checks := map[string]server.Check{
		"database": func(context.Context) error {
			if away.Load() {
				return errors.New("connection refused")
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.FollowReadiness(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), hs, checks, 10*time.Millisecond, svc)
	}()
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	wait := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("health %v, want %v", status(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(healthpb.HealthCheckResponse_SERVING)
	away.Store(true)
	wait(healthpb.HealthCheckResponse_NOT_SERVING)
	if err := server.Ready(context.Background(), checks); err == nil {
		t.Error("Ready passed with the database away")
	}
	away.Store(false)
	wait(healthpb.HealthCheckResponse_SERVING)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := status(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after stop: %v", got)
	}
}
