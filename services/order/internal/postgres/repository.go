// Package postgres stores orders in PostgreSQL: the orders, their items and status history,
// with the inbox and outbox of order-service in the same database.
package postgres

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration order-service's database needs, in order.
var Migrations = unitofwork.Migrations(migrations)

// Repository stores orders.
type Repository struct {
	pool        *pgxpool.Pool
	creates     creates
	afterOutbox func([]outbox.Row)
	afterStatus func([]order.Update)
}

// NewRepository returns a repository on pool.
func NewRepository(pool *pgxpool.Pool) *Repository {
	r := &Repository{pool: pool, afterOutbox: func([]outbox.Row) {}, afterStatus: func([]order.Update) {}}
	r.creates.insert = r.insertRetrying
	return r
}

// AfterStatusCommit sets f to be called with the status changes each commit made: the status
// feed's Announce.
func (r *Repository) AfterStatusCommit(f func([]order.Update)) { r.afterStatus = f }

// AfterOutboxCommit sets f to be called with the outbox rows each commit added: the outbox
// relay's Publish.
func (r *Repository) AfterOutboxCommit(f func([]outbox.Row)) { r.afterOutbox = f }

// selectOrders reads whole orders: items and history come in the same row as JSON, so that one
// round trip answers Get and List.
const selectOrders = `
	SELECT o.id::text, o.customer_id::text, o.payment_method, o.status, o.total_minor, o.shipping_address,
		COALESCE(o.failure_reason, ''), COALESCE(o.tracking_code, ''), COALESCE(o.request_id, ''),
		o.created_at, o.updated_at,
		(SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
			'unit_price_minor', i.unit_price_minor) ORDER BY i.line)
		 FROM order_items i WHERE i.order_id = o.id),
		(SELECT json_agg(json_build_object('status', h.status, 'reason', h.reason, 'changed_at', h.changed_at)
			ORDER BY h.id)
		 FROM order_status_history h WHERE h.order_id = o.id)
	FROM orders o`

type itemJSON struct {
	ProductID      string `json:"product_id"`
	Quantity       int32  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
}

type historyJSON struct {
	Status    string    `json:"status"`
	Reason    string    `json:"reason"`
	ChangedAt time.Time `json:"changed_at"`
}

func scanOrder(row pgx.CollectableRow) (*order.Order, error) {
	var (
		s                   order.Snapshot
		status              string
		total               int64
		addr, items, events []byte
	)
	if err := row.Scan(&s.ID, &s.CustomerID, &s.PaymentMethod, &status, &total, &addr,
		&s.FailureReason, &s.TrackingCode, &s.RequestID, &s.CreatedAt, &s.UpdatedAt, &items, &events); err != nil {
		return nil, err
	}
	s.Status, s.Total = order.Status(status), order.Money(total)
	if addr != nil {
		s.ShippingAddress = new(order.Address)
		if err := json.Unmarshal(addr, s.ShippingAddress); err != nil {
			return nil, fmt.Errorf("order %s: address: %w", s.ID, err)
		}
	}
	var its []itemJSON
	if items != nil {
		if err := json.Unmarshal(items, &its); err != nil {
			return nil, fmt.Errorf("order %s: items: %w", s.ID, err)
		}
	}
	for _, it := range its {
		s.Items = append(s.Items, order.Item{ProductID: it.ProductID, Quantity: it.Quantity, UnitPrice: order.Money(it.UnitPriceMinor)})
	}
	var hs []historyJSON
	if events != nil {
		if err := json.Unmarshal(events, &hs); err != nil {
			return nil, fmt.Errorf("order %s: history: %w", s.ID, err)
		}
	}
	for _, h := range hs {
		s.History = append(s.History, order.StatusChange{Status: order.Status(h.Status), Reason: h.Reason, At: h.ChangedAt.UTC()})
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return order.Restore(s), nil
}

func (r *Repository) getOne(ctx context.Context, where string, arg any) (*order.Order, error) {
	rows, err := r.pool.Query(ctx, selectOrders+" WHERE "+where, arg)
	if err != nil {
		return nil, fmt.Errorf("select order: %w", err)
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, order.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("select order: %w", err)
	}
	return o, nil
}

// Get returns the order with id, or order.ErrNotFound.
func (r *Repository) Get(ctx context.Context, id string) (*order.Order, error) {
	if uuid.Validate(id) != nil {
		return nil, order.ErrNotFound
	}
	return r.getOne(ctx, "o.id = $1", id)
}

// repeated returns the order that o's customer placed earlier under o's request id, or
// order.ErrRequestIDReused when that order was placed with a different request; an error
// matching pgx.ErrNoRows when the customer has none. An order that release 1 stored beside this
// release has no fingerprint yet (migration 00002): it is computed from the stored order.
func (r *Repository) repeated(ctx context.Context, o *order.Order) (*order.Order, error) {
	var (
		id          string
		fingerprint []byte
	)
	err := r.pool.QueryRow(ctx, `SELECT id::text, COALESCE(request_fingerprint, order_request_fingerprint(id))
		FROM orders WHERE customer_id = $1 AND request_id = $2`,
		o.CustomerID(), o.RequestID()).Scan(&id, &fingerprint)
	if err != nil {
		return nil, fmt.Errorf("order of request id %q: %w", o.RequestID(), err)
	}
	if !bytes.Equal(fingerprint, o.RequestFingerprint()) {
		return nil, fmt.Errorf("%w: order %s", order.ErrRequestIDReused, id)
	}
	return r.Get(ctx, id)
}

// List returns a page of orders matching q, newest first, and the token of the next page ("" on
// the last page). Pages are keyed by (created_at, id), so they stay stable while orders arrive.
// A malformed token or filter is an *order.FieldError.
func (r *Repository) List(ctx context.Context, q order.ListQuery) ([]*order.Order, string, error) {
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.CustomerID != "" {
		if uuid.Validate(q.CustomerID) != nil {
			return nil, "", &order.FieldError{Field: "customer_id", Msg: "must be a UUID"}
		}
		conds = append(conds, "o.customer_id = "+arg(q.CustomerID))
	}
	if q.Status != "" {
		conds = append(conds, "o.status = "+arg(string(q.Status)))
	}
	if q.PageToken != "" {
		at, id, err := decodeToken(q.PageToken)
		if err != nil {
			return nil, "", &order.FieldError{Field: "page_token", Msg: "is not a token this service issued"}
		}
		conds = append(conds, fmt.Sprintf("(o.created_at, o.id) < (%s, %s)", arg(at), arg(id)))
	}
	sql := selectOrders
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	// One more than a page tells whether another page follows.
	sql += " ORDER BY o.created_at DESC, o.id DESC LIMIT " + arg(q.PageSize+1)
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	orders, err := pgx.CollectRows(rows, scanOrder)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	if len(orders) <= q.PageSize {
		return orders, "", nil
	}
	orders = orders[:q.PageSize]
	last := orders[len(orders)-1]
	return orders, encodeToken(last.CreatedAt(), last.ID()), nil
}

func encodeToken(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "," + id))
}

func decodeToken(token string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return time.Time{}, "", err
	}
	micros, id, ok := strings.Cut(string(b), ",")
	if !ok {
		return time.Time{}, "", errors.New("no separator")
	}
	n, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", err
	}
	if err := uuid.Validate(id); err != nil {
		return time.Time{}, "", err
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// Store reads and changes orders within the transaction of a unit of work: it reads and locks
// a batch's orders ahead, and writes the changes the rules record with the commit.
type Store struct {
	tx       database.Querier
	announce func([]order.Update)
	orders   unitofwork.Rows[*order.Order]
	changes  []order.Change
	updates  []order.Update // what Flush wrote, announced once committed
}

// Store returns the store of tx; the status changes it writes are announced once tx committed.
func (r *Repository) Store(tx database.Querier) *Store {
	return &Store{tx: tx, announce: r.afterStatus}
}

// completion is how long orders take from being placed to a terminal status, by that status.
var completion = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordersaga_order_completion_seconds",
	Help:    "Time from CreateOrder to a terminal status, by the status (outcome).",
	Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
}, []string{"outcome"})

// Committed announces the status changes the transaction made, and measures the orders it
// ended.
func (s *Store) Committed() {
	if len(s.updates) == 0 {
		return
	}
	s.announce(s.updates)
	for _, u := range s.updates {
		if u.Change.Status.Terminal() && !u.CreatedAt.IsZero() {
			completion.WithLabelValues(string(u.Change.Status)).Observe(u.Change.At.Sub(u.CreatedAt).Seconds())
		}
	}
}

// lockOrders loads the saga state of orders and locks their rows, in id order: every batch on
// every replica locks in the same order, so batches never deadlock.
const lockOrders = `
	SELECT id::text, status, COALESCE(failure_reason, ''), COALESCE(tracking_code, ''), created_at, updated_at, version
	FROM orders WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE`

// Prepare locks the batch's orders and reads their saga state (unitofwork.Tx).
func (s *Store) Prepare(b *pgx.Batch, batch unitofwork.Batch) {
	s.orders.Prepare(b, lockOrders, batch.OrderIDs, s.scan)
}

func (s *Store) scan(rows pgx.Rows) error {
	var snap order.Snapshot
	var status string
	_, err := pgx.ForEachRow(rows, []any{&snap.ID, &status, &snap.FailureReason, &snap.TrackingCode, &snap.CreatedAt, &snap.UpdatedAt, &snap.Version}, func() error {
		snap.Status = order.Status(status)
		s.orders.Found(snap.ID, order.Restore(snap))
		return nil
	})
	return err
}

// Order returns the saga state of an order, locked, or nil when it does not exist.
func (s *Store) Order(ctx context.Context, id string) (*order.Order, error) {
	return s.orders.Read(ctx, s.tx, lockOrders, id, s.scan)
}

// Record stores a change of an order's status and the order as it is after it, at the commit.
func (s *Store) Record(o *order.Order, c order.Change) {
	s.orders.Save(o.ID(), o)
	s.changes = append(s.changes, c)
}

// Flush queues the new state of the orders that changed and their history (unitofwork.Tx).
func (s *Store) Flush(b *pgx.Batch) error {
	changes := s.changes
	if len(changes) == 0 {
		return nil
	}
	orders := make(map[string]*order.Order, len(changes))
	for _, o := range s.orders.Saved() {
		orders[o.ID()] = o
	}
	var ids, statuses, reasons, tracking []string
	var updated []time.Time
	var versions []int32
	written := map[string]bool{}
	hIDs, hStatuses, hReasons, hAt := make([]string, len(changes)), make([]string, len(changes)), make([]string, len(changes)), make([]time.Time, len(changes))
	for i, c := range changes {
		id := c.Event.OrderID
		hIDs[i], hStatuses[i], hReasons[i], hAt[i] = id, string(c.Status), c.Reason, c.At
		if written[id] {
			continue
		}
		written[id] = true
		o := orders[id]
		ids = append(ids, id)
		statuses = append(statuses, string(o.Status()))
		reasons = append(reasons, o.FailureReason())
		tracking = append(tracking, o.TrackingCode())
		updated = append(updated, o.UpdatedAt())
		versions = append(versions, int32(o.Version()))
	}
	b.Queue(`
		UPDATE orders o SET status = u.status, failure_reason = NULLIF(u.reason, ''),
			tracking_code = NULLIF(u.tracking, ''), updated_at = u.updated_at, version = u.version
		FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int[])
			AS u(id, status, reason, tracking, updated_at, version)
		WHERE o.id = u.id`, ids, statuses, reasons, tracking, updated, versions)
	b.Queue(`
		INSERT INTO order_status_history (order_id, status, reason, changed_at)
		SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::timestamptz[])`,
		hIDs, hStatuses, hReasons, hAt)
	s.updates = s.updates[:0]
	for _, c := range changes {
		s.updates = append(s.updates, c.Update)
	}
	return nil
}
