package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// terminal lists the terminal statuses, for the queries that look for the others. The status
// has no index (migration 00004): these queries walk the created_at index and filter.
func terminal() []string {
	var out []string
	for _, s := range order.Statuses {
		if s.Terminal() {
			out = append(out, string(s))
		}
	}
	return out
}

// UpdateOverdue locks, in one short transaction, at most limit orders created in [since,
// before) that are not terminal, oldest first, and passes them to update; the changes and
// events it returns are stored in the same transaction, with their history entries. Once
// committed, the relay gets the events and the status feed the changes. It returns how many
// orders it locked.
//
// The rows are locked FOR UPDATE SKIP LOCKED: an order another replica is cancelling, or an
// event handler is moving, is left to the next sweep, and the lock re-checks the status, so an
// order that turned terminal meanwhile is never passed on. since bounds the walk of the
// created_at index; no index covers the status (its updates stay HOT).
func (r *Repository) UpdateOverdue(ctx context.Context, since, before time.Time, limit int,
	update func([]*order.Order) ([]order.Change, []outbox.Event, error)) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `
		SELECT id::text, status, COALESCE(failure_reason, ''), COALESCE(tracking_code, ''), created_at, updated_at, version
		FROM orders
		WHERE created_at >= $1 AND created_at < $2 AND status <> ALL($3::text[])
		ORDER BY created_at LIMIT $4
		FOR UPDATE SKIP LOCKED`, since, before, terminal(), limit)
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
	orders := make(map[string]*order.Order, len(overdue))
	for _, o := range overdue {
		orders[o.ID()] = o
	}
	store := r.Bind(tx)
	if err := store.Save(ctx, orders, changes); err != nil {
		return 0, err
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

// OldestPending returns when the oldest order created at or after since that is not terminal
// was created, and false when there is none. It walks the created_at index from since and
// stops at the first such order.
func (r *Repository) OldestPending(ctx context.Context, since time.Time) (time.Time, bool, error) {
	var at time.Time
	err := r.pool.QueryRow(ctx, `
		SELECT created_at FROM orders WHERE created_at >= $1 AND status <> ALL($2::text[])
		ORDER BY created_at LIMIT 1`, since, terminal()).Scan(&at)
	if err == pgx.ErrNoRows {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest pending order: %w", err)
	}
	return at.UTC(), true, nil
}
