package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// TestListOrdersPagedWhileOrdering pages through a customer's orders 50 at a time while the
// same customer keeps ordering: every order that existed when paging began is listed exactly
// once, and no order twice, however the new ones land between the pages.
func TestListOrdersPagedWhileOrdering(t *testing.T) {
	t.Parallel()
	const before, pageSize = 300, 50
	customer := uuid.NewString()
	p := product(t, 1_000_000)
	place := func(ctx context.Context) (string, error) {
		req := orderReq(p, 1, "1.00")
		req.CustomerId = customer
		resp, err := sys.OrderClient().CreateOrder(ctx, req)
		return resp.GetOrder().GetOrderId(), err
	}

	existing := map[string]bool{}
	ids := make([]string, before)
	errs := make([]error, before)
	parallel(8, func(w int) {
		for i := w; i < before; i += 8 {
			ids[i], errs[i] = place(ctxT(t, 30*time.Second))
		}
	})
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("CreateOrder: %v", errs[i])
		}
		existing[id] = true
	}

	// The customer keeps ordering until the last page is read.
	var placed atomic.Int64
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := place(ctx); err != nil {
				if ctx.Err() == nil {
					done <- err
				}
				return
			}
			placed.Add(1)
		}
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("CreateOrder while paging: %v", err)
		}
	}()

	seen := map[string]int{}
	req := &orderv1.ListOrdersRequest{CustomerId: customer, PageSize: pageSize}
	for page := 0; ; page++ {
		if page > 2*before/pageSize+10 {
			t.Fatalf("paging does not end after %d pages", page)
		}
		// Let orders arrive between every two pages.
		for n := placed.Load(); placed.Load() < n+3; {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-t.Context().Done():
				return
			}
		}
		resp, err := sys.OrderClient().ListOrders(ctxT(t, 10*time.Second), req)
		if err != nil {
			t.Fatalf("ListOrders page %d: %v", page, err)
		}
		if len(resp.GetOrders()) > pageSize {
			t.Fatalf("page %d holds %d orders, more than %d", page, len(resp.GetOrders()), pageSize)
		}
		for _, o := range resp.GetOrders() {
			if o.GetCustomerId() != customer {
				t.Errorf("listed order %s of customer %s", o.GetOrderId(), o.GetCustomerId())
			}
			seen[o.GetOrderId()]++
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if placed.Load() == 0 {
		t.Fatal("no order was placed while paging: the test proved nothing")
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("order %s listed %d times", id, n)
		}
	}
	missing := 0
	for id := range existing {
		if seen[id] != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of the %d orders placed before paging began were not listed", missing, before)
	}
	t.Logf("%d orders listed, %d placed while paging", len(seen), placed.Load())
}
