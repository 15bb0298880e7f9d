package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// The lifecycle tests are not parallel: Go runs them before any parallel test resumes, so no
// other test sees a service down.

// TestGracefulShutdown sends SIGTERM to every service in turn: each must exit 0 within the
// bound; it is started again and the system still confirms orders.
func TestGracefulShutdown(t *testing.T) {
	for _, svc := range stack.Services {
		start := time.Now()
		if err := sys.Stop(svc, 0); err != nil {
			t.Errorf("SIGTERM %s: %v", svc, err)
		} else {
			t.Logf("%s exited 0 %s after SIGTERM", svc, time.Since(start).Round(time.Millisecond))
		}
		if err := sys.RestartContext(t.Context(), svc, 0); err != nil {
			t.Fatalf("restart %s: %v", svc, err)
		}
	}
	checkConfirmed(t, waitTerminal(t, create(t, orderReq(product(t, 10), 2, "49.90")).GetOrderId()))
}

// TestCrashRecovery SIGKILLs each service with orders in flight; once it is back every order
// still reaches its outcome and no stock is lost or oversold.
func TestCrashRecovery(t *testing.T) {
	const orders = 20
	for _, svc := range stack.Services {
		t.Run(svc, func(t *testing.T) {
			p := product(t, orders)
			ids := make([]string, orders)
			for i := range ids {
				ids[i] = create(t, orderReq(p, 1, "1.00")).GetOrderId()
			}
			sys.Kill(svc, 0)
			if err := sys.RestartContext(t.Context(), svc, 0); err != nil {
				t.Fatalf("restart %s: %v", svc, err)
			}
			errs := make([]error, orders)
			parallel(orders, func(i int) {
				ctx, cancel := context.WithTimeout(t.Context(), outcomeTimeout)
				defer cancel()
				o, err := awaitTerminal(ctx, ids[i])
				if err == nil && o.GetStatus() != confirmed {
					err = fmt.Errorf("status %s (%s)", o.GetStatus(), o.GetFailureReason())
				}
				errs[i] = err
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("order %s: %v", ids[i], err)
				}
			}
			if s := stock(t, p); s.GetReserved() != orders || s.GetAvailable() != 0 {
				t.Errorf("stock %v, want all %d reserved", s, orders)
			}
		})
	}
}
