//go:build faults

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// TestFaultKillEachService kills each service with SIGKILL in turn while orders flow, and
// starts it again a couple of seconds later: nothing a crash interrupts may be lost or done
// twice (the outbox publishes what was committed, the inbox absorbs redeliveries).
func TestFaultKillEachService(t *testing.T) {
	e := start(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 400, Duration: 20 * time.Second, FaultAt: 3 * time.Second}, func(ctx context.Context) {
		for _, svc := range stack.Services {
			e.stack.Kill(svc, 0)
			t.Logf("killed %s", svc)
			pause(ctx, 2*time.Second)
			began := time.Now()
			if err := e.stack.RestartContext(ctx, svc, 0); err != nil {
				t.Errorf("restart %s: %v", svc, err)
				return
			}
			t.Logf("restarted %s, ready in %s", svc, time.Since(began).Round(time.Millisecond))
			pause(ctx, time.Second)
		}
	})
	e.verify(res, 0)
}

// TestFaultKillOneReplicaEach runs two replicas of every service, competing for each queue, with
// orders split over both order-service replicas, and kills one replica of each service mid-stream;
// the survivors carry on and the killed ones rejoin.
func TestFaultKillOneReplicaEach(t *testing.T) {
	e := start(t, stack.Options{Replicas: 2})
	res := e.stream(streamOptions{Orders: 400, Duration: 20 * time.Second, FaultAt: 3 * time.Second}, func(ctx context.Context) {
		for i, svc := range stack.Services {
			e.stack.Kill(svc, i%2)
			t.Logf("killed %s-%d", svc, i%2)
			pause(ctx, 2*time.Second)
		}
		for i, svc := range stack.Services {
			if err := e.stack.RestartContext(ctx, svc, i%2); err != nil {
				t.Errorf("restart %s-%d: %v", svc, i%2, err)
			}
		}
		t.Log("restarted the killed replicas")
	})
	e.verify(res, 0)
}
