package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// UpdateOverdue locks, in one short transaction, at most limit orders created before before
// that are not terminal, oldest first, and passes them to update; the changes and
// events it returns are stored in the same transaction, with their history entries. Once
// committed, the relay gets the events and the status feed the changes. It returns how many
// orders it locked.
//
// The rows are locked FOR UPDATE SKIP LOCKED: an order another replica is cancelling, or an
// event handler is moving, is left to the next sweep, and the lock re-checks the status, so an
// order that turned terminal meanwhile reaches update with its terminal status (the
// domain leaves it be). The status is not filtered here: the planner cannot know that
// open_orders holds no terminal order, and would misjudge the join. The candidates come from
// open_orders (migration 00006), which holds every order not terminal however late its insert
// became visible, on its created_at index.
func (r *Repository) UpdateOverdue(ctx context.Context, before time.Time, limit int,
	update func([]*order.Order) ([]order.Change, []outbox.Event, error)) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `
		SELECT o.id::text, o.status, COALESCE(o.failure_reason, ''), COALESCE(o.tracking_code, ''), o.created_at,
			o.updated_at, o.version
		FROM open_orders p JOIN orders o ON o.id = p.order_id
		WHERE p.created_at < $1
		ORDER BY p.created_at, p.order_id LIMIT $2
		FOR UPDATE OF o SKIP LOCKED`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("select overdue orders: %w", err)
	}
	var overdue []*order.Order
	var snap order.Snapshot
	var status string
	_, err = pgx.ForEachRow(rows, []any{&snap.ID, &status, &snap.FailureReason, &snap.TrackingCode, &snap.CreatedAt, &snap.UpdatedAt, &snap.Version}, func() error {
		snap.Status = order.Status(status)
		overdue = append(overdue, order.Restore(snap))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("select overdue orders: %w", err)
	}
	if len(overdue) == 0 {
		return 0, nil
	}
	changes, events, err := update(overdue)
	if err != nil {
		return 0, err
	}
	if len(changes) == 0 && len(events) == 0 {
		return len(overdue), nil
	}
	byID := make(map[string]*order.Order, len(overdue))
	for _, o := range overdue {
		byID[o.ID()] = o
	}
	store := r.Store(tx)
	for _, c := range changes {
		store.Record(byID[c.Event.OrderID], c)
	}
	b := &pgx.Batch{}
	if err := store.Flush(b); err != nil {
		return 0, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("write order changes: %w", err)
	}
	added, err := outbox.Add(ctx, tx, events...)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	r.afterOutbox(added)
	store.Committed()
	return len(overdue), nil
}

// OldestPending returns when the oldest order that is not terminal was created, and false
// when there is none: the first entry of open_orders' created_at index.
func (r *Repository) OldestPending(ctx context.Context) (time.Time, bool, error) {
	var at time.Time
	err := r.pool.QueryRow(ctx, `SELECT created_at FROM open_orders ORDER BY created_at LIMIT 1`).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest pending order: %w", err)
	}
	return at.UTC(), true, nil
}

// CountPending returns how many orders are in each status that is not terminal: a scan of
// open_orders, as large as the orders in flight, not of the whole table.
func (r *Repository) CountPending(ctx context.Context) (map[order.Status]int64, error) {
	rows, err := r.pool.Query(ctx, `
		SELECT o.status, count(*) FROM open_orders p JOIN orders o ON o.id = p.order_id GROUP BY o.status`)
	if err != nil {
		return nil, fmt.Errorf("count pending orders: %w", err)
	}
	counts := map[order.Status]int64{}
	var status string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		if st := order.Status(status); !st.Terminal() {
			counts[st] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count pending orders: %w", err)
	}
	return counts, nil
}
