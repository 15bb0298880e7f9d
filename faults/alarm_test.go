//go:build faults

package faults

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// alarmRSSGrowth bounds how much order-service's resident memory may grow while the broker
// blocks it. What arrives meanwhile goes to the outbox table, not to memory: a relay that
// buffered every unpublished event, or publishes piling up in the client, would show here.
const alarmRSSGrowth = 100 << 20

// TestFaultBrokerAlarm sets a memory alarm on a scratch RabbitMQ node (never the machine's) under
// a stream of orders: the broker blocks every publishing connection. The services report not
// ready while blocked, order-service keeps taking orders without its memory growing, a SIGTERMed
// service still exits within the stack's bound, and once the alarm clears everything drains.
func TestFaultBrokerAlarm(t *testing.T) {
	keepMachineBroker(t)
	node := newRabbitNode(t, "ordersaga-alarm", 4)
	node.start(t)
	e := start(t, stack.Options{Broker: brokerOf(node)})
	res := e.stream(streamOptions{Orders: 400, Duration: 25 * time.Second, FaultAt: 5 * time.Second}, func(ctx context.Context) {
		if err := alarm(ctx, t, e, node); err != nil {
			t.Error(err)
		}
	})
	e.verify(res, 0)
}

// alarm raises the memory alarm, checks the services while it lasts, and clears it.
func alarm(ctx context.Context, t *testing.T, e *env, node *rabbitNode) error {
	before, err := rss(e.stack.PID("order", 0))
	if err != nil {
		return err
	}
	// A watermark this low is below any node's use: the alarm goes off at the next memory check.
	if _, err := node.ctl("set_vm_memory_high_watermark", "0.0000001"); err != nil {
		return err
	}
	raised := time.Now()
	cleared := false
	defer func() {
		if !cleared {
			_, _ = node.ctl("set_vm_memory_high_watermark", "0.4")
		}
	}()
	// A connection learns of the block when it next publishes: order-service's at the next
	// order, the others' only while they still answer events of earlier orders.
	for {
		if code, err := readyz(ctx, e.stack.OpsAddr("order", 0)); err == nil && code != http.StatusOK {
			break
		}
		if time.Since(raised) > 10*time.Second {
			return fmt.Errorf("order-service still ready %s after the alarm", time.Since(raised).Round(time.Millisecond))
		}
		pause(ctx, 100*time.Millisecond)
	}
	t.Logf("memory alarm raised; order-service not ready within %s", time.Since(raised).Round(time.Millisecond))
	// Orders keep coming for a while: order-service takes them into its outbox.
	peak := before
	notReady := map[string]bool{}
	for time.Since(raised) < 10*time.Second {
		n, err := rss(e.stack.PID("order", 0))
		if err != nil {
			return err
		}
		peak = max(peak, n)
		for _, svc := range stack.Services {
			code, err := readyz(ctx, e.stack.OpsAddr(svc, 0))
			if err == nil && code != http.StatusOK {
				notReady[svc] = true
			} else if svc == "order" {
				t.Errorf("order-service ready again under the alarm: %d %v", code, err)
			}
		}
		pause(ctx, 250*time.Millisecond)
	}
	t.Logf("not ready under the alarm: %v", slices.Sorted(maps.Keys(notReady)))
	t.Logf("order-service RSS: %d MiB before the alarm, at most %d MiB under it", before>>20, peak>>20)
	if peak > before+alarmRSSGrowth {
		t.Errorf("order-service RSS grew from %d to %d MiB under the alarm", before>>20, peak>>20)
	}
	// Its relay is stuck in a publish the broker does not read: SIGTERM still ends it in time.
	began := time.Now()
	if err := e.stack.Stop("order", 0); err != nil {
		t.Errorf("SIGTERM under the alarm: %v", err)
	}
	t.Logf("order-service exited %s after SIGTERM, under the alarm", time.Since(began).Round(time.Millisecond))
	if _, err := node.ctl("set_vm_memory_high_watermark", "0.4"); err != nil {
		return err
	}
	cleared = true
	t.Logf("alarm cleared after %s", time.Since(raised).Round(time.Millisecond))
	if err := e.stack.RestartContext(ctx, "order", 0); err != nil {
		return fmt.Errorf("restart order-service: %w", err)
	}
	for _, svc := range stack.Services {
		for {
			code, err := readyz(ctx, e.stack.OpsAddr(svc, 0))
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Since(raised) > time.Minute {
				return fmt.Errorf("%s not ready after the alarm cleared: %d %v", svc, code, err)
			}
			pause(ctx, 100*time.Millisecond)
		}
	}
	return nil
}

// readyz returns the status code of a service's /readyz.
func readyz(ctx context.Context, opsAddr string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+opsAddr+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rss returns the resident memory of process pid in bytes.
func rss(pid int) (int64, error) {
	if pid == 0 {
		return 0, fmt.Errorf("process not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestFaultAlarmDrainsBacklog lets 1,500 orders wait for a stopped payment-service on a scratch
// node, raises a memory alarm, then starts payment-service: it must drain its queue while the
// alarm lasts, its consuming connection never blocked by the alarm that blocks its publishing
// one, and what it produces waiting in its outbox. A service that acked on the connection it
// publishes on would stop at its prefetch, and a disk alarm that only consumption can clear
// would never clear. Once the alarm clears, every order completes.
func TestFaultAlarmDrainsBacklog(t *testing.T) {
	keepMachineBroker(t)
	node := newRabbitNode(t, "ordersaga-alarm", 4)
	node.start(t)
	e := start(t, stack.Options{Broker: brokerOf(node)})
	ctx := t.Context()
	if err := e.stack.Stop("payment", 0); err != nil {
		t.Fatal(err)
	}
	res := e.stream(streamOptions{Orders: 1500, Workers: 8, Duration: 15 * time.Second}, nil)
	backlog := func() int {
		depths, err := e.queueDepths(ctx)
		if err != nil {
			t.Fatalf("queue depths: %v", err)
		}
		return depths["payment.order-created"]
	}
	waiting := backlog()
	t.Logf("%d events wait for payment-service", waiting)
	if waiting < len(res.Accepted)*9/10 {
		t.Fatalf("only %d of %d orders wait for payment-service", waiting, len(res.Accepted))
	}
	if _, err := node.ctl("set_vm_memory_high_watermark", "0.0000001"); err != nil {
		t.Fatal(err)
	}
	raised := time.Now()
	defer func() { _, _ = node.ctl("set_vm_memory_high_watermark", "0.4") }()
	memAlarm := func() bool {
		var nodes []struct {
			MemAlarm bool `json:"mem_alarm"`
		}
		if err := node.api(ctx, http.MethodGet, "/api/nodes", nil, &nodes); err != nil {
			t.Fatalf("node status: %v", err)
		}
		return len(nodes) > 0 && nodes[0].MemAlarm
	}
	for !memAlarm() {
		if time.Since(raised) > 15*time.Second {
			t.Fatal("no memory alarm 15s after lowering the watermark")
		}
		pause(ctx, 250*time.Millisecond)
	}
	// Not ready while the alarm blocks its publishing, and not to be waited for.
	if err := e.stack.Launch("payment", 0); err != nil {
		t.Fatalf("start payment-service: %v", err)
	}
	started := time.Now()
	for left := backlog(); left > 0; left = backlog() {
		if time.Since(started) > alarmDrainBound {
			t.Fatalf("payment-service drained %d of %d events in %s under the alarm", waiting-left, waiting, alarmDrainBound)
		}
		pause(ctx, 500*time.Millisecond)
	}
	t.Logf("payment-service drained %d events in %s under the alarm", waiting, time.Since(started).Round(time.Millisecond))
	if !memAlarm() {
		t.Fatal("the alarm ended before payment-service drained its queue: the test proved nothing")
	}
	if _, err := node.ctl("set_vm_memory_high_watermark", "0.4"); err != nil {
		t.Fatal(err)
	}
	res.FaultEnd = time.Now()
	e.verify(res, 0)
}

// alarmDrainBound is how long payment-service may take to drain its backlog under the alarm: a
// few seconds of work at its usual rate, with room for a slow machine.
const alarmDrainBound = 60 * time.Second
