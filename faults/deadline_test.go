//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// deadlineOrders is how many orders a deadline scenario places.
const deadlineOrders = 10

// placeHappy places n orders that would be CONFIRMED if the saga ran, and returns their ids.
func (e *env) placeHappy(n int) []string {
	e.t.Helper()
	var ids []string
	for i := 0; len(ids) < n; i++ {
		if mix[i%len(mix)] != kindHappy {
			continue
		}
		ctx, cancel := context.WithTimeout(e.t.Context(), callTimeout)
		resp, err := e.orders[0].CreateOrder(ctx, e.request(i))
		cancel()
		if err != nil {
			e.t.Fatalf("CreateOrder: %v", err)
		}
		ids = append(ids, resp.GetOrder().GetOrderId())
	}
	return ids
}

// waitCancelled waits until every order is CANCELLED by its deadline.
func (e *env) waitCancelled(ids []string, within time.Duration) {
	e.t.Helper()
	began := time.Now()
	for _, id := range ids {
		for {
			ctx, cancel := context.WithTimeout(e.t.Context(), callTimeout)
			resp, err := e.orders[0].GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
			cancel()
			o := resp.GetOrder()
			if err == nil && o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
				if !strings.Contains(o.GetFailureReason(), "saga deadline passed") {
					e.t.Errorf("order %s cancelled for %q, want the deadline", id, o.GetFailureReason())
				}
				break
			}
			if time.Since(began) > within {
				e.t.Fatalf("order %s not cancelled within %s: %v %v", id, within, o.GetStatus(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	e.t.Logf("%d orders cancelled by their deadline within %s", len(ids), time.Since(began).Round(time.Millisecond))
}

// countIn counts the rows of svc's database that sql selects for the orders.
func (e *env) countIn(svc, sql string, ids []string) int {
	e.t.Helper()
	var n int
	if err := e.pools()[svc].QueryRow(e.t.Context(), sql, ids).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitCount waits until countIn is want.
func (e *env) waitCount(svc, sql string, ids []string, want int, within time.Duration) {
	e.t.Helper()
	began := time.Now()
	for {
		n := e.countIn(svc, sql, ids)
		if n == want {
			return
		}
		if time.Since(began) > within {
			e.t.Fatalf("%s: %d, want %d within %s", sql, n, want, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkStaysCancelled checks that nothing moved the orders after their cancellation.
func (e *env) checkStaysCancelled(ids []string) {
	e.t.Helper()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(e.t.Context(), callTimeout)
		resp, err := e.orders[0].GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
		cancel()
		if err != nil {
			e.t.Fatal(err)
		}
		if st := resp.GetOrder().GetStatus(); st != orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
			e.t.Errorf("order %s moved to %s after its cancellation", id, st)
		}
	}
}

// TestFaultDeadlinePaymentStopped stops payment-service, lets the orders' deadline pass, and
// starts it again: the order.created it finds waiting charges nothing.
func TestFaultDeadlinePaymentStopped(t *testing.T) {
	e := start(t, stack.Options{Env: map[string]string{"ORDER_SAGA_TIMEOUT": "3s"}})
	if err := e.stack.Stop("payment", 0); err != nil {
		t.Fatalf("stop payment: %v", err)
	}
	ids := e.placeHappy(deadlineOrders)
	e.waitCancelled(ids, 30*time.Second)
	e.stack.Restart("payment", 0)
	e.waitQuiescent(nil)
	// payment-service finds order.created and order.cancelled waiting on two queues: a
	// cancellation taken first leaves a tombstone and nothing is charged; an order.created taken
	// first is charged and reversed at once. Never does a charge stay.
	if n := e.countIn("payment", `SELECT count(*) FROM payments WHERE order_id = ANY($1::uuid[]) AND status NOT IN ('CANCELLED', 'REVERSED')`, ids); n != 0 {
		t.Errorf("%d payments neither cancelled nor reversed for orders cancelled before payment-service came back", n)
	}
	reversed := e.countIn("payment", `SELECT count(*) FROM payments WHERE order_id = ANY($1::uuid[]) AND status = 'REVERSED'`, ids)
	t.Logf("%d of %d orders charged and reversed at once, the others never charged", reversed, len(ids))
	if n := e.countIn("inventory", `SELECT count(*) FROM reservations WHERE order_id = ANY($1::uuid[]) AND status <> 'CANCELLED'`, ids); n != 0 {
		t.Errorf("%d reservations other than tombstones", n)
	}
	e.checkStaysCancelled(ids)
	if v, err := e.metric(t.Context(), "order", "ordersaga_orders_cancelled_by_deadline_total", `status="PENDING"`); err != nil || v < deadlineOrders {
		t.Errorf("ordersaga_orders_cancelled_by_deadline_total{status=PENDING} = %v, %v; want >= %d", v, err, deadlineOrders)
	}
	e.audit(0)
}

// TestFaultDeadlineShippingStopped stops shipping-service, so that orders stop at
// INVENTORY_RESERVED: their deadline cancels them, payment reverses and inventory releases
// before shipping comes back, and then ships nothing.
func TestFaultDeadlineShippingStopped(t *testing.T) {
	e := start(t, stack.Options{Env: map[string]string{"ORDER_SAGA_TIMEOUT": "4s"}})
	if err := e.stack.Stop("shipping", 0); err != nil {
		t.Fatalf("stop shipping: %v", err)
	}
	ids := e.placeHappy(deadlineOrders)
	e.waitCancelled(ids, 30*time.Second)
	e.waitCount("payment", `SELECT count(*) FROM payments WHERE order_id = ANY($1::uuid[]) AND status = 'REVERSED'`, ids, len(ids), 30*time.Second)
	e.waitCount("inventory", `SELECT count(*) FROM reservations WHERE order_id = ANY($1::uuid[]) AND status = 'RELEASED'`, ids, len(ids), 30*time.Second)
	e.stack.Restart("shipping", 0)
	e.waitQuiescent(nil)
	if n := e.countIn("shipping", `SELECT count(*) FROM shipments WHERE order_id = ANY($1::uuid[]) AND status <> 'CANCELLED'`, ids); n != 0 {
		t.Errorf("%d shipments not cancelled", n)
	}
	e.checkStaysCancelled(ids)
	if v, err := e.metric(t.Context(), "order", "ordersaga_orders_cancelled_by_deadline_total", `status="INVENTORY_RESERVED"`); err != nil || v < deadlineOrders {
		t.Errorf("ordersaga_orders_cancelled_by_deadline_total{status=INVENTORY_RESERVED} = %v, %v; want >= %d", v, err, deadlineOrders)
	}
	e.audit(0)
}

// TestFaultDeadlineUnderLoad runs two replicas of every service with a deadline shorter than
// many sagas take under load: every order ends exactly once, confirmed or compensated, never
// both, and the audit finds nothing held for a cancelled order.
func TestFaultDeadlineUnderLoad(t *testing.T) {
	e := start(t, stack.Options{Replicas: 2, Env: map[string]string{"ORDER_SAGA_TIMEOUT": "300ms"}})
	res := e.stream(streamOptions{Orders: 400, Duration: 8 * time.Second}, nil)
	orders := e.waitQuiescent(res.Accepted)
	byStatus := map[orderv1.OrderStatus]int{}
	for _, o := range orders {
		byStatus[o.GetStatus()]++
		terminal := 0
		for _, h := range o.GetHistory() {
			switch h.GetStatus() {
			case orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, orderv1.OrderStatus_ORDER_STATUS_CANCELLED, orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED:
				terminal++
			}
		}
		if terminal != 1 {
			t.Errorf("order %s ended %d times: %v", o.GetOrderId(), terminal, o.GetHistory())
		}
	}
	t.Logf("outcomes: %v", byStatus)
	if v, err := e.metric(t.Context(), "order", "ordersaga_orders_cancelled_by_deadline_total"); err != nil || v == 0 {
		t.Logf("no order cancelled by its deadline (%v, %v): the saga beat a 300ms deadline every time", v, err)
	}
	e.audit(0)
}

// TestFaultDeadlineDeadLetterReplayed dead-letters the genuine order.created of real orders
// while payment-service is down, lets their deadline cancel them, and replays the dead letters
// once payment-service has taken the cancellations: the replayed events charge nothing, move no
// status, and leave no dead letter behind.
func TestFaultDeadlineDeadLetterReplayed(t *testing.T) {
	e := start(t, stack.Options{Env: map[string]string{"ORDER_SAGA_TIMEOUT": "3s"}})
	if err := e.stack.Stop("payment", 0); err != nil {
		t.Fatalf("stop payment: %v", err)
	}
	ids := e.placeHappy(deadlineOrders)
	sub := catalog.Subscription{Consumer: catalog.Payment, RoutingKey: catalog.OrderCreated}
	e.deadLetterWaiting(sub, ids)
	e.waitCancelled(ids, 30*time.Second)
	e.stack.Restart("payment", 0)
	e.waitCount("payment", `SELECT count(*) FROM payments WHERE order_id = ANY($1::uuid[]) AND status = 'CANCELLED'`, ids, len(ids), 30*time.Second)

	out, code := e.ordersctl("dlq", "replay", sub.DeadLetterQueue(), "-all")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d ", len(ids))) {
		t.Fatalf("ordersctl dlq replay: exit %d\n%s", code, out)
	}
	e.waitQuiescent(nil)
	// The cancellation's tombstone refuses the replayed order.created: not even charged and reversed.
	for svc, table := range map[string]string{"payment": "payments", "inventory": "reservations", "shipping": "shipments"} {
		if n := e.countIn(svc, `SELECT count(*) FROM `+table+` WHERE order_id = ANY($1::uuid[]) AND status <> 'CANCELLED'`, ids); n != 0 {
			t.Errorf("%d %s other than tombstones after the replay", n, table)
		}
	}
	e.checkStaysCancelled(ids)
	e.audit(0)
}

// deadLetterWaiting rejects the events of the orders waiting in sub's queue, whose consumer is
// stopped, so that the broker moves each to the dead-letter queue as it would a message its
// consumer gave up on, and waits until the dead-letter queue counts them all.
func (e *env) deadLetterWaiting(sub catalog.Subscription, ids []string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	ch, err := e.broker().Channel(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	queue, dlq := sub.Queue(), sub.DeadLetterQueue()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for len(want) > 0 {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			e.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			if ctx.Err() != nil {
				e.t.Fatalf("%s: %d orders' events never arrived", queue, len(want))
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !want[d.CorrelationId] {
			e.t.Fatalf("%s holds an event of order %s, not one of the test's", queue, d.CorrelationId)
		}
		delete(want, d.CorrelationId)
		if err := d.Reject(false); err != nil {
			e.t.Fatalf("reject: %v", err)
		}
	}
	for {
		q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
		if err != nil {
			e.t.Fatalf("%s: %v", dlq, err)
		}
		if q.Messages == len(ids) {
			return
		}
		if ctx.Err() != nil {
			e.t.Fatalf("%s: %d dead letters, want %d", dlq, q.Messages, len(ids))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
