package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// TestNoOverselling races 50 one-unit orders for a product with 10 in stock, three rounds in a
// row: exactly 10 are confirmed, and the stock is fully reserved and never oversold.
func TestNoOverselling(t *testing.T) {
	t.Parallel()
	const orders, inStock = 50, 10
	for round := range 3 {
		p := product(t, inStock)
		ids := make([]string, orders)
		statuses := make([]orderv1.OrderStatus, orders)
		errs := make([]error, orders)
		parallel(orders, func(i int) {
			ctx, cancel := context.WithTimeout(t.Context(), outcomeTimeout)
			defer cancel()
			req := orderReq(p, 1, "1.00")
			resp, err := sys.OrderClient().CreateOrder(ctx, req)
			if err != nil {
				errs[i] = fmt.Errorf("create: %w", err)
				return
			}
			ids[i] = resp.GetOrder().GetOrderId()
			o, err := awaitTerminal(ctx, ids[i])
			if err != nil {
				errs[i] = fmt.Errorf("order %s: %w", resp.GetOrder().GetOrderId(), err)
				return
			}
			statuses[i] = o.GetStatus()
		})
		counts := map[orderv1.OrderStatus]int{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			counts[statuses[i]]++
		}
		if counts[confirmed] != inStock || counts[cancelled] != orders-inStock {
			t.Errorf("round %d: outcomes %v, want %d CONFIRMED and %d CANCELLED", round, counts, inStock, orders-inStock)
		}
		if s := stock(t, p); s.GetTotal() != inStock || s.GetReserved() != inStock || s.GetAvailable() != 0 {
			t.Errorf("round %d: stock %v, want total %d reserved %d available 0", round, s, inStock, inStock)
		}
		checkSettled(t, ids, statuses)
	}
}

// checkSettled asserts that orders keep the final status they reached: events still arriving
// for them (e.g. inventory.failed after payment.reversed) must not move them again.
func checkSettled(t *testing.T, ids []string, statuses []orderv1.OrderStatus) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	for i, id := range ids {
		resp, err := sys.OrderClient().GetOrder(ctxT(t, 10*time.Second), &orderv1.GetOrderRequest{OrderId: id})
		if err != nil {
			t.Fatalf("GetOrder %s: %v", id, err)
		}
		o := resp.GetOrder()
		h := history(o)
		if o.GetStatus() != statuses[i] || len(h) == 0 || h[len(h)-1] != statuses[i] {
			t.Errorf("order %s reached %s, later shows status %s with history %v", id, statuses[i], o.GetStatus(), h)
		}
	}
}

// TestIdempotentCreate sends the same request_id again, sequentially and concurrently: every
// call returns the same order, and only one payment is ever made for it.
func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	p := product(t, 100)

	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		req := orderReq(p, 2, "49.90")
		req.RequestId = uuid.NewString()
		first := create(t, req)
		second := create(t, req)
		if first.GetOrderId() != second.GetOrderId() {
			t.Fatalf("same request_id gave orders %s and %s", first.GetOrderId(), second.GetOrderId())
		}
		if second.GetRequestId() != req.RequestId {
			t.Errorf("request_id %q, want %q", second.GetRequestId(), req.RequestId)
		}
		checkOnce(t, req.RequestId, first.GetOrderId())
	})

	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		req := orderReq(p, 2, "49.90")
		req.RequestId = uuid.NewString()
		const n = 10
		ids := make([]string, n)
		errs := make([]error, n)
		parallel(n, func(i int) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			resp, err := sys.OrderClient().CreateOrder(ctx, req)
			ids[i], errs[i] = resp.GetOrder().GetOrderId(), err
		})
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("create %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("same request_id gave orders %v", ids)
			}
		}
		checkOnce(t, req.RequestId, ids[0])
	})
}

// checkOnce waits for the order and asserts a single order row and a single payment.
func checkOnce(t *testing.T, requestID, orderID string) {
	t.Helper()
	checkConfirmed(t, waitTerminal(t, orderID))
	if n := count(t, "order", "SELECT count(*) FROM orders WHERE request_id = $1", requestID); n != 1 {
		t.Errorf("%d orders for request_id %s, want 1", n, requestID)
	}
	if n := count(t, "payment", "SELECT count(*) FROM payments WHERE order_id = $1", orderID); n != 1 {
		t.Errorf("%d payments for order %s, want 1", n, orderID)
	}
}
