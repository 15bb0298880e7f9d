package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/failure"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// maxCreateBatch bounds how many orders one insert statement stores.
const maxCreateBatch = 64

// creates group-commits new orders: the CreateOrder calls that arrive while an insert is under
// way are stored together by the next one, in one statement and one commit. A call arriving
// when none is under way is stored at once, so an idle service adds no wait.
//
// The batches are stored by a goroutine of their own, not by a caller: every caller waits only
// as long as its context allows, and a batch's round trips are bounded by the latest deadline
// of the callers in it, so nothing waits on a database that does not answer for longer than
// someone is there for the answer.
type creates struct {
	insert func(context.Context, []*createReq) error // stores a batch, setting each outcome

	mu      sync.Mutex
	pending []*createReq
	busy    bool // the goroutine storing batches runs
}

// createReq is one order to store and, once stored, its outcome.
type createReq struct {
	o        *order.Order
	msg      broker.Message // its order.created event
	deadline time.Time      // its caller's, zero without one
	span     trace.Span     // its caller's, which the batch's round trips continue while it records
	done     chan struct{}  // closed once its batch is done and the outcome set
	// Outcome.
	outboxID int64 // 0 when the order was not inserted: its (customer, request id) exists
	err      error
}

// Create stores a new order, its first history entry and created, its order.created event, and
// reports created = true; the relay gets the event once committed. When the customer already
// placed an order with the same request id, it stores nothing and returns that order with
// created = false, or order.ErrRequestIDReused when that order came from a different request;
// a concurrent request with the same key waits for the first to commit and gets the same
// answer. When another customer's order has the request id, it stores nothing and returns
// order.ErrRequestIDTaken: the global key on request_id stays until release 1 no longer runs
// (migration 00002, docs/upgrades.md).
//
// It returns context.Cause(ctx) once ctx ends first. The order is then either not stored at
// all (withdrawn before its batch began) or stored whole with its event, by a batch that
// outlived the call: its saga runs, and a retry with the same request id returns it.
func (r *Repository) Create(ctx context.Context, o *order.Order, created outbox.Event) (*order.Order, bool, error) {
	// The event continues the caller's trace (CreateOrder's span), so that the order's saga is
	// one trace.
	ev := created
	ev.Trace = trace.SpanContextFromContext(ctx)
	msgs, err := outbox.Encode(ev)
	if err != nil {
		return nil, false, err
	}
	req := &createReq{o: o, msg: msgs[0], span: trace.SpanFromContext(ctx), done: make(chan struct{})}
	req.deadline, _ = ctx.Deadline()
	if err := r.creates.store(ctx, req); err != nil {
		return nil, false, err
	}
	if isOrderIDTaken(req.err) {
		// A retry after a lost connection found the order: the first attempt committed. Its
		// order.created is in the outbox, for the relay's poll.
		return o, true, nil
	}
	if isRequestIDTaken(req.err) {
		// The global key (orders_request_id_key) holds the request id: the customer's own order
		// under it, committed by another replica while this insert ran (the per-customer key,
		// the insert's ON CONFLICT target, did not see it yet), or another customer's order.
		existing, err := r.repeated(ctx, o)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, fmt.Errorf("%w: %w", order.ErrRequestIDTaken, req.err)
		}
		if err != nil {
			return nil, false, err
		}
		return existing, false, nil
	}
	if req.err != nil {
		// A batch ends at the latest deadline of its callers: an error at this caller's own
		// deadline is that deadline, whichever of the two timers fired first.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return nil, false, context.Cause(ctx)
		}
		return nil, false, req.err
	}
	if req.outboxID == 0 {
		existing, err := r.repeated(ctx, o)
		if err != nil {
			return nil, false, err
		}
		return existing, false, nil
	}
	return o, true, nil
}

// store queues req and waits until its batch is done or ctx ends. A request still queued
// when ctx ends is withdrawn, so that it is never stored after its caller gave up.
func (c *creates) store(ctx context.Context, req *createReq) error {
	c.mu.Lock()
	c.pending = append(c.pending, req)
	if !c.busy {
		c.busy = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if i := slices.Index(c.pending, req); i >= 0 {
		c.pending = slices.Delete(c.pending, i, i+1)
	}
	c.mu.Unlock()
	select {
	case <-req.done: // its batch finished meanwhile: the answer is there
		return nil
	default:
		return context.Cause(ctx)
	}
}

// run stores batches until none is pending.
func (c *creates) run() {
	c.mu.Lock()
	for len(c.pending) > 0 {
		batch := c.take()
		c.mu.Unlock()
		ctx, cancel := batchContext(batch)
		err := c.insert(ctx, batch)
		if err != nil && len(batch) > 1 && !failure.IsTransient(err) && ctx.Err() == nil {
			// One order spoils the batch: store each on its own so that only it fails.
			for _, one := range batch {
				one.err = c.insert(ctx, []*createReq{one})
			}
		} else if err != nil {
			for _, one := range batch {
				one.err = err
			}
		}
		cancel()
		for _, one := range batch {
			close(one.done)
		}
		c.mu.Lock()
	}
	c.busy = false
	c.mu.Unlock()
}

// batchContext bounds the round trips of a batch by the latest deadline of its callers (those
// who gave up earlier no longer wait), and by createRetryFor, and continues the first
// caller's trace. It is not any caller's context: the batch holds other callers' orders.
func batchContext(batch []*createReq) (context.Context, context.CancelFunc) {
	limit := time.Now().Add(createRetryFor)
	var latest time.Time
	for _, req := range batch {
		if req.deadline.IsZero() || req.deadline.After(limit) {
			latest = limit
			break
		}
		if req.deadline.After(latest) {
			latest = req.deadline
		}
	}
	// The span itself, not only its ids: the database's spans start under a recording one.
	ctx := trace.ContextWithSpan(context.Background(), batch[0].span)
	return context.WithDeadline(ctx, latest)
}

// take removes the next batch from pending: at most one order per (customer, request id), so
// that a repeat waits for the first to commit and then finds it. Called with mu held.
func (c *creates) take() []*createReq {
	var batch, rest []*createReq
	keys := map[[2]string]bool{}
	for _, req := range c.pending {
		key := [2]string{req.o.CustomerID(), req.o.RequestID()}
		if len(batch) == maxCreateBatch || (key[1] != "" && keys[key]) {
			rest = append(rest, req)
			continue
		}
		keys[key] = true
		batch = append(batch, req)
	}
	c.pending = rest
	return batch
}

// createRetryFor bounds how long a batch keeps trying when its callers set no earlier deadline:
// a failover takes a few seconds to some tens of them (connections terminated, the database
// read-only until the standby is promoted), and the statement timeout of a session is 30s, so a
// client willing to wait longer than a failover sees none of it. CreateOrder's own bound
// (grpcapi) is far shorter: its callers get UNAVAILABLE instead, and retry with their key.
const createRetryFor = 30 * time.Second

// insertRetrying inserts a batch, again when the database connection was lost or the database
// was briefly unavailable or read-only (a failover, a pooler restart), so that the client does
// not see it, until ctx ends. Once committed, the relay gets the events, whether or not their
// callers still wait.
// Retrying is always safe: the orders' ids are chosen here, so an insert that committed before
// its answer was lost is found by its primary key (isOrderIDTaken), and a key by its request id.
func (r *Repository) insertRetrying(ctx context.Context, batch []*createReq) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := r.insert(ctx, batch)
		if err != nil && !failure.IsTransient(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(createRetryFor))
	if err != nil {
		return err
	}
	var rows []outbox.Row
	for _, req := range batch {
		if req.outboxID != 0 {
			rows = append(rows, outbox.Row{ID: req.outboxID, Msg: req.msg})
		}
	}
	if len(rows) > 0 {
		r.afterOutbox(rows)
	}
	return nil
}

// isOrderIDTaken reports whether err says the order's row exists already.
func isOrderIDTaken(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "orders_pkey"
}

// isRequestIDTaken reports whether err says an order with the request id exists already, of any
// customer: the global key release 1 needs, which a contract step drops once release 1 no
// longer runs (docs/upgrades.md, "Pending contract steps"). The insert's ON CONFLICT target is
// the per-customer key, so the global one raises an error instead of skipping the row.
func isRequestIDTaken(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "orders_request_id_key"
}

// insert stores a batch of orders in one statement — so in one transaction and one round trip —
// and records in each request the outbox id of its event, or 0 when its key was taken.
func (r *Repository) insert(ctx context.Context, batch []*createReq) error {
	var (
		ids, customers, methods, statuses, countries, requestIDs []string
		totals                                                   []int64
		addrs                                                    []*string
		fingerprints                                             [][]byte
		itemOrders, itemProducts                                 []string
		itemLines, itemQuantities                                []int32
		itemPrices                                               []int64
		hOrders, hStatuses, hReasons                             []string
		hAt, created                                             []time.Time
		events                                                   []broker.Message
	)
	for _, req := range batch {
		o := req.o
		var addr *string
		if a := o.ShippingAddress(); a != nil {
			b, err := json.Marshal(a)
			if err != nil {
				return fmt.Errorf("marshal address: %w", err)
			}
			s := string(b)
			addr = &s
		}
		var fingerprint []byte // NULL without a key
		if o.RequestID() != "" {
			fingerprint = o.RequestFingerprint()
		}
		ids, customers, methods = append(ids, o.ID()), append(customers, o.CustomerID()), append(methods, o.PaymentMethod())
		statuses, countries, requestIDs = append(statuses, string(o.Status())), append(countries, o.CountryCode()), append(requestIDs, o.RequestID())
		totals, addrs, fingerprints, created = append(totals, int64(o.Total())), append(addrs, addr), append(fingerprints, fingerprint), append(created, o.CreatedAt())
		for i, it := range o.Items() {
			itemOrders, itemLines, itemProducts = append(itemOrders, o.ID()), append(itemLines, int32(i+1)), append(itemProducts, it.ProductID)
			itemQuantities, itemPrices = append(itemQuantities, it.Quantity), append(itemPrices, int64(it.UnitPrice))
		}
		first := o.History()[0]
		hOrders, hStatuses, hReasons, hAt = append(hOrders, o.ID()), append(hStatuses, string(first.Status)), append(hReasons, first.Reason), append(hAt, first.At)
		events = append(events, req.msg)
	}
	ev := outbox.ColumnsOf(events)
	// The items, the first history entry and the event of an order exist only if its row was
	// inserted, so a taken request id leaves nothing behind.
	rows, err := r.pool.Query(ctx, `
		WITH o AS (
			INSERT INTO orders (id, customer_id, payment_method, status, total_minor, shipping_address,
				country_code, request_id, request_fingerprint, created_at, updated_at)
			SELECT u.id, u.customer_id, u.method, u.status, u.total, u.addr::jsonb, NULLIF(u.country, ''),
				NULLIF(u.request_id, ''), u.fingerprint, u.at, u.at
			FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
				$8::text[], $9::bytea[], $10::timestamptz[])
				AS u(id, customer_id, method, status, total, addr, country, request_id, fingerprint, at)
			ON CONFLICT (customer_id, request_id) DO NOTHING
			RETURNING id
		), items AS (
			INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_minor)
			SELECT i.order_id, i.line, i.product_id, i.quantity, i.price
			FROM unnest($11::text[]::uuid[], $12::int[], $13::text[]::uuid[], $14::int[], $15::bigint[])
				AS i(order_id, line, product_id, quantity, price)
			JOIN o ON o.id = i.order_id
		), history AS (
			INSERT INTO order_status_history (order_id, status, reason, changed_at)
			SELECT h.order_id, h.status, h.reason, h.at
			FROM unnest($16::text[]::uuid[], $17::text[], $18::text[], $19::timestamptz[]) AS h(order_id, status, reason, at)
			JOIN o ON o.id = h.order_id
		), event AS (
			INSERT INTO outbox (event_id, exchange, routing_key, message_type, correlation_id, body, created_at,
				traceparent, tracestate)
			SELECT e.event_id, e.exchange, e.routing_key, e.message_type, e.correlation_id, e.body, e.created_at,
				e.traceparent, e.tracestate
			FROM unnest($20::text[]::uuid[], $21::text[], $22::text[], $23::text[], $24::text[], $25::bytea[], $26::timestamptz[],
				$27::text[], $28::text[])
				AS e(event_id, exchange, routing_key, message_type, correlation_id, body, created_at, traceparent, tracestate)
			JOIN o ON o.id::text = e.correlation_id
			RETURNING id, correlation_id
		)
		SELECT id, correlation_id FROM event`,
		ids, customers, methods, statuses, totals, addrs, countries, requestIDs, fingerprints, created,
		itemOrders, itemLines, itemProducts, itemQuantities, itemPrices,
		hOrders, hStatuses, hReasons, hAt,
		ev.EventIDs, ev.Exchanges, ev.RoutingKeys, ev.Types, ev.CorrelationIDs, ev.Bodies, ev.CreatedAt,
		ev.Traceparents, ev.Tracestates)
	if err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	byOrder := make(map[string]*createReq, len(batch))
	for _, req := range batch {
		req.outboxID = 0
		byOrder[req.o.ID()] = req
	}
	for rows.Next() {
		var id int64
		var orderID string
		if err := rows.Scan(&id, &orderID); err != nil {
			rows.Close()
			return fmt.Errorf("insert orders: %w", err)
		}
		if req := byOrder[orderID]; req != nil {
			req.outboxID = id
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	return nil
}
