package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
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

// Cancellation is an order that CancelOverdue cancelled, and the status it was stuck in.
type Cancellation struct {
	OrderID string
	Stuck   order.Status
}

// CancelOverdue cancels, in one short transaction, at most limit orders created in [since,
// before) that are not terminal, oldest first, for reason: each moves to CANCELLED by the
// order domain's DeadlinePassed, with its history entry and an order.cancelled event in the
// outbox. Once committed, the relay gets the events and the status feed the changes.
//
// The rows are locked FOR UPDATE SKIP LOCKED: an order another replica is cancelling, or an
// event handler is moving, is left to the next sweep, and the lock re-checks the status, so an
// order that turned terminal meanwhile is never cancelled. since bounds the walk of the
// created_at index; no index covers the status (its updates stay HOT).
func (r *Repository) CancelOverdue(ctx context.Context, since, before time.Time, limit int, reason string) ([]Cancellation, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `
		SELECT id::text, status, COALESCE(failure_reason, ''), COALESCE(tracking_code, ''), created_at, updated_at, version
		FROM orders
		WHERE created_at >= $1 AND created_at < $2 AND status <> ALL($3::text[])
		ORDER BY created_at LIMIT $4
		FOR UPDATE SKIP LOCKED`, since, before, terminal(), limit)
	if err != nil {
		return nil, fmt.Errorf("select overdue orders: %w", err)
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
		return nil, fmt.Errorf("select overdue orders: %w", err)
	}
	if len(overdue) == 0 {
		return nil, nil
	}
	now := time.Now()
	orders := make(map[string]*order.Order, len(overdue))
	var (
		changes   []order.Change
		events    []outbox.Event
		cancelled []Cancellation
	)
	for _, o := range overdue {
		stuck := o.Status()
		e := order.Event{ID: newID(), OrderID: o.ID(), Kind: order.DeadlinePassed, Reason: reason}
		change, changed, err := o.Apply(e, now)
		if err != nil {
			return nil, fmt.Errorf("order %s: %w", o.ID(), err)
		}
		if !changed {
			continue
		}
		orders[o.ID()] = o
		changes = append(changes, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
		events = append(events, eventhandler.Cancelled(e, stuck, now))
		cancelled = append(cancelled, Cancellation{OrderID: o.ID(), Stuck: stuck})
	}
	store := r.Bind(tx)
	if err := store.Save(ctx, orders, changes); err != nil {
		return nil, err
	}
	added, err := outbox.Add(ctx, tx, events...)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	r.afterOutbox(added)
	store.Committed()
	return cancelled, nil
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
