package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/loadgen"
)

// The history a seeded order went through, and the queues whose inbox took its events.
var (
	seededStatuses = []string{"PENDING", "PAYMENT_APPROVED", "INVENTORY_RESERVED", "CONFIRMED"}
	seededQueues   = []string{"order.payment-approved", "order.inventory-reserved", "order.shipping-scheduled"}
)

// seed fills order-service's database at dbURL with n confirmed orders of the past year, with
// their items, status history and inbox entries, as a shop's year of traffic leaves them;
// heavyCount of them belong to customer heavy. It writes with COPY, in chunks, so that millions
// of orders take minutes, and then analyzes the tables as autovacuum would.
func seed(ctx context.Context, dbURL string, n int, heavy string, heavyCount int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.Now().Add(-time.Hour)
	const chunk = 50_000
	for done := 0; done < n; done += chunk {
		size := min(chunk, n-done)
		var orders, items, history, inbox [][]any
		for i := range size {
			id := uuid.New()
			customer := uuid.NewString()
			if done+i < heavyCount {
				customer = heavy
			}
			at := now.Add(-time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
			qty := int32(1 + rng.IntN(3))
			price := int64(100 + rng.IntN(10_000))
			orders = append(orders, []any{id, customer, "credit_card", "CONFIRMED", int64(qty) * price,
				fmt.Sprintf("TRK-%08X", rng.Uint32()), at, at.Add(50 * time.Millisecond)})
			items = append(items, []any{id, int32(1), uuid.New(), qty, price})
			for k, st := range seededStatuses {
				history = append(history, []any{id, st, at.Add(time.Duration(k) * 10 * time.Millisecond)})
			}
			for k, q := range seededQueues {
				inbox = append(inbox, []any{uuid.New(), q, at.Add(time.Duration(k+1) * 10 * time.Millisecond)})
			}
		}
		for _, c := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"orders", []string{"id", "customer_id", "payment_method", "status", "total_minor", "tracking_code", "created_at", "updated_at"}, orders},
			{"order_items", []string{"order_id", "line", "product_id", "quantity", "unit_price_minor"}, items},
			{"order_status_history", []string{"order_id", "status", "changed_at"}, history},
			{"idempotency_keys", []string{"event_id", "queue", "processed_at"}, inbox},
		} {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
				return fmt.Errorf("copy into %s: %w", c.table, err)
			}
		}
	}
	_, err = conn.Exec(ctx, "ANALYZE orders, order_items, order_status_history, idempotency_keys")
	return err
}

// readLatencies is how long order-service's reads take on a large database: GetOrder of
// seeded orders picked at random, and ListOrders pages of 50 of the customer with the most
// orders, walked from the newest.
type readLatencies struct {
	get, list []time.Duration // sorted
}

// probeReads times samples GetOrder calls and samples ListOrders pages (walking on from the
// first page until the customer's orders run out, then from the first again).
func probeReads(ctx context.Context, client orderv1.OrderServiceClient, customer string, samples int) (readLatencies, error) {
	var r readLatencies
	var ids []string
	token := ""
	for range samples {
		start := time.Now()
		resp, err := client.ListOrders(ctx, &orderv1.ListOrdersRequest{CustomerId: customer, PageSize: 50, PageToken: token})
		if err != nil {
			return r, fmt.Errorf("ListOrders: %w", err)
		}
		r.list = append(r.list, time.Since(start))
		for _, o := range resp.GetOrders() {
			ids = append(ids, o.GetOrderId())
		}
		token = resp.GetNextPageToken()
	}
	if len(ids) == 0 {
		return r, fmt.Errorf("customer %s has no orders", customer)
	}
	for i := range samples {
		start := time.Now()
		if _, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: ids[(i*7919)%len(ids)]}); err != nil {
			return r, fmt.Errorf("GetOrder: %w", err)
		}
		r.get = append(r.get, time.Since(start))
	}
	slices.Sort(r.get)
	slices.Sort(r.list)
	return r, nil
}

// String is the reads' p50 and p99.
func (r readLatencies) String() string {
	return fmt.Sprintf("GetOrder p50 %s p99 %s; ListOrders page of 50 p50 %s p99 %s",
		dur(loadgen.Percentile(r.get, 0.5)), dur(loadgen.Percentile(r.get, 0.99)),
		dur(loadgen.Percentile(r.list, 0.5)), dur(loadgen.Percentile(r.list, 0.99)))
}
