package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Ready runs checks, all of them, and joins their failures: nil when the service is ready.
func Ready(ctx context.Context, checks map[string]Check) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var errs []error
	for name, check := range checks {
		if err := check(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// FollowReadiness keeps the gRPC health of services on hs in step with checks, the same ones
// /readyz answers from: NOT_SERVING while a check fails (the database or the broker away, the
// broker blocking publishes), SERVING again once all pass. It checks every interval until ctx
// ends, then reports NOT_SERVING, so that clients go elsewhere while the service stops.
func FollowReadiness(ctx context.Context, log *slog.Logger, hs *health.Server, checks map[string]Check, interval time.Duration, services ...string) error {
	set := func(status healthpb.HealthCheckResponse_ServingStatus) {
		for _, svc := range services {
			hs.SetServingStatus(svc, status)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	ready := true // what the servers start with: they serve only once connected
	for {
		err := Ready(ctx, checks)
		if now := err == nil; now != ready && ctx.Err() == nil {
			ready = now
			if ready {
				log.InfoContext(ctx, "ready again")
				set(healthpb.HealthCheckResponse_SERVING)
			} else {
				log.WarnContext(ctx, "not ready", "err", err)
				set(healthpb.HealthCheckResponse_NOT_SERVING)
			}
		}
		select {
		case <-ctx.Done():
			set(healthpb.HealthCheckResponse_NOT_SERVING)
			return nil
		case <-t.C:
		}
	}
}
