package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/loadgen"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// ampleStock never runs out in a run.
const ampleStock = 1 << 40

// hotShare is the share of its orders the hot product has stock for, when -hot-stock is 0:
// enough that most orders are confirmed and the rest fail for lack of stock.
const hotShare = 0.7

// scenario is one row of the report.
type scenario struct {
	name     string
	kind     string  // "spread", "hot" or "open"
	open     rate    // open loop, as asked
	rate     float64 // orders/s, open loop, once known
	inFlight int     // closed loop
	products int
	// confirmedOnly: latency is create → CONFIRMED, of CONFIRMED orders only.
	confirmedOnly bool
}

// result is what one scenario measured.
type result struct {
	scenario
	placed     int // CreateOrder succeeded
	completed  int // reached a final status
	unfinished int // not final when the drain ended
	errors     int
	outcomes   map[orderv1.OrderStatus]int
	latencies  []time.Duration // sorted; of completed orders, or CONFIRMED ones (confirmedOnly)
	elapsed    time.Duration   // first create → last final status
	firstErr   error
	// means is, per histogram the report reads (histograms), the mean sample of each series
	// over the scenario; nil when /metrics could not be read.
	means map[string]map[string]float64
	cpu   cpuUse
	hot   *hotCheck // the hot-product scenario only
}

func (r *result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.completed) / r.elapsed.Seconds()
}

// hotCheck is the hot product's stock after the run against the orders' final statuses.
type hotCheck struct {
	stock      *inventoryv1.Stock
	confirmed  int64 // CONFIRMED orders, one unit each
	cancelled  int64
	unresolved int // orders whose final status could not be learnt
	err        error
}

func (h *hotCheck) ok() bool {
	return h.err == nil && h.unresolved == 0 && h.stock.GetReserved() == h.confirmed &&
		h.stock.GetReserved() <= h.stock.GetTotal()
}

func (h *hotCheck) String() string {
	if h.err != nil {
		return "FAILED: " + h.err.Error()
	}
	st := h.stock
	verdict := "ok"
	if !h.ok() {
		verdict = "FAILED"
	}
	s := fmt.Sprintf("%s: stock %d, reserved %d, CONFIRMED units %d, CANCELLED %d (reserved == CONFIRMED: %t, reserved ≤ total: %t)",
		verdict, st.GetTotal(), st.GetReserved(), h.confirmed, h.cancelled, st.GetReserved() == h.confirmed, st.GetReserved() <= st.GetTotal())
	if h.unresolved > 0 {
		s += fmt.Sprintf("; %d orders never reached a final status, so the check is incomplete", h.unresolved)
	}
	if h.cancelled == 0 && h.ok() {
		s += "; no order ran out of stock (raise the load or lower -hot-stock to see both outcomes)"
	}
	return s
}

// runner runs scenarios on one stack.
type runner struct {
	stack   *stack.Stack
	clients []orderv1.OrderServiceClient
	cfg     config
	hz      float64
}

// run seeds the scenario's products, runs it with the stack's metrics and CPU sampled at both
// ends, and, for the hot product, checks the stock against the orders.
func (rn *runner) run(ctx context.Context, sc scenario, hotStock int64) (*result, error) {
	stock := int64(ampleStock)
	if sc.kind == "hot" {
		stock = hotStock
	}
	products := make([]string, sc.products)
	for i := range products {
		products[i] = uuid.NewString()
		if _, err := rn.stack.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: products[i], Quantity: stock}); err != nil {
			return nil, fmt.Errorf("seed product: %w", err)
		}
	}
	l := &load{gen: &loadgen.Generator{Clients: rn.clients, Products: products}, drain: rn.cfg.drain}

	before, scrapeErr := scrapeHistograms(ctx, rn.stack)
	cpuBefore := sampleCPU(rn.stack)
	var start time.Time
	var samples []sample
	if sc.kind == "open" {
		start, samples = l.openLoop(ctx, sc.rate, rn.cfg.duration)
	} else {
		start, samples = l.closedLoop(ctx, sc.inFlight, rn.cfg.duration)
	}
	cpuAfter := sampleCPU(rn.stack)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := summarize(sc, start, samples)
	r.cpu = cpuDelta(cpuBefore, cpuAfter, rn.hz)
	if scrapeErr == nil {
		var after totals
		if after, scrapeErr = scrapeHistograms(ctx, rn.stack); scrapeErr == nil {
			r.means = means(before, after)
		}
	}
	if scrapeErr != nil && r.firstErr == nil {
		r.firstErr = scrapeErr
	}
	if sc.kind == "hot" {
		r.hot = rn.checkHot(ctx, products[0], samples)
	}
	return r, nil
}

// checkHot learns the final status of every order of the run, asking order-service for those
// the load generator did not see end (an order whose CreateOrder failed is looked up by
// repeating the request with its request id), and compares the CONFIRMED ones with the
// product's reserved stock.
func (rn *runner) checkHot(ctx context.Context, product string, samples []sample) *hotCheck {
	h := &hotCheck{}
	ctx, cancel := context.WithTimeout(ctx, rn.cfg.drain)
	defer cancel()
	client := rn.stack.OrderClient()
	for _, s := range samples {
		status := s.Status
		if !s.Final() {
			status = rn.resolve(ctx, client, product, s)
		}
		switch status {
		case orderv1.OrderStatus_ORDER_STATUS_CONFIRMED:
			h.confirmed++
		case orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
			h.cancelled++
		case orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED:
		default:
			h.unresolved++
		}
	}
	resp, err := rn.stack.InventoryClient().GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: product})
	if err != nil {
		h.err = fmt.Errorf("GetStock: %w", err)
		return h
	}
	h.stock = resp.GetStock()
	return h
}

// resolve waits until the order of s is final and returns its status, or UNSPECIFIED when ctx
// ends first.
func (rn *runner) resolve(ctx context.Context, client orderv1.OrderServiceClient, product string, s sample) orderv1.OrderStatus {
	id := s.OrderID
	for ctx.Err() == nil {
		if id == "" {
			// The same request as before: order-service returns the order it stored, or
			// stores it now, and either way it is one of the run's.
			resp, err := client.CreateOrder(ctx, &orderv1.CreateOrderRequest{
				CustomerId:      uuid.NewString(),
				PaymentMethod:   "credit_card",
				Items:           []*orderv1.LineItem{{ProductId: product, Quantity: 1, UnitPrice: "9.90"}},
				ShippingAddress: &orderv1.ShippingAddress{CountryCode: "BR"},
				RequestId:       s.RequestID,
			})
			if err == nil {
				id = resp.GetOrder().GetOrderId()
			}
		}
		if id != "" {
			resp, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
			if err == nil && loadgen.Final(resp.GetOrder().GetStatus()) {
				return resp.GetOrder().GetStatus()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
}

func summarize(sc scenario, start time.Time, samples []sample) *result {
	r := &result{scenario: sc, outcomes: map[orderv1.OrderStatus]int{}}
	last := start
	for _, s := range samples {
		if s.Placed {
			r.placed++
		}
		switch {
		case s.Unfinished:
			r.unfinished++
			continue
		case s.Err != nil:
			r.errors++
			if r.firstErr == nil {
				r.firstErr = s.Err
			}
			continue
		}
		r.completed++
		r.outcomes[s.Status]++
		if !sc.confirmedOnly || s.Status == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
			r.latencies = append(r.latencies, s.Latency)
		}
		if s.End.After(last) {
			last = s.End
		}
	}
	r.elapsed = last.Sub(start)
	slices.Sort(r.latencies)
	return r
}
