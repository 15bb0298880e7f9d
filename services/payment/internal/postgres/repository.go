// Package postgres stores payments in PostgreSQL. Each call handles one batch of events in one
// transaction: the inbox claim, the state change and the outbox events commit together.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the payment tables.
var Migrations = database.Migrations{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")}

// Repository stores payments.
type Repository struct {
	pool *pgxpool.Pool
}

// NewRepository returns a repository on pool.
func NewRepository(pool *pgxpool.Pool) *Repository {
	return &Repository{pool: pool}
}

// NewPayment is a payment decided for an incoming event, with the event announcing it.
type NewPayment struct {
	EventID  string // the incoming event
	Payment  *payment.Payment
	Announce outbox.Event
}

// Create stores the payments of the batch's events seen for the first time and adds their
// announcements to the outbox. An order that already has a payment keeps it, and nothing is
// announced for it again. It returns the payments stored.
func (r *Repository) Create(ctx context.Context, queue string, batch []NewPayment) ([]NewPayment, error) {
	var stored []NewPayment
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		fresh, err := inbox.Claim(ctx, tx, queue, eventIDs(batch, func(p NewPayment) string { return p.EventID }))
		if err != nil {
			return err
		}
		var news []*payment.Payment
		for _, np := range batch {
			if fresh[np.EventID] {
				news = append(news, np.Payment)
				delete(fresh, np.EventID) // the same event twice in one batch counts once
			}
		}
		// Inserting in order id order makes concurrent batches wait on each other's unique keys
		// in one direction only, never in a cycle.
		slices.SortFunc(news, func(a, b *payment.Payment) int { return strings.Compare(a.OrderID(), b.OrderID()) })
		var ids, orders, methods, statuses, reasons []string
		var amounts []int64
		for _, p := range news {
			ids, orders, methods = append(ids, p.ID()), append(orders, p.OrderID()), append(methods, p.Method())
			amounts, statuses, reasons = append(amounts, p.AmountMinor()), append(statuses, string(p.Status())), append(reasons, p.Reason())
		}
		if len(ids) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `
			INSERT INTO payments (id, order_id, method, amount_minor, status, reason)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[])
			ON CONFLICT (order_id) DO NOTHING
			RETURNING id::text`, ids, orders, methods, amounts, statuses, nullIfEmpty(reasons))
		if err != nil {
			return fmt.Errorf("insert payments: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("insert payments: %w", err)
		}
		isNew := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			isNew[id] = true
		}
		var events []outbox.Event
		for _, np := range batch {
			if isNew[np.Payment.ID()] {
				stored = append(stored, np)
				events = append(events, np.Announce)
			}
		}
		return outbox.Add(ctx, tx, events...)
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// OrderEvent is an incoming event about an order's payment.
type OrderEvent struct {
	EventID string
	OrderID string
}

// UpdateFunc changes an order's payment (nil when the order has none) in reaction to an event,
// and returns the events announcing the change; none when nothing changed.
type UpdateFunc func(ev OrderEvent, p *payment.Payment) ([]outbox.Event, error)

// Update applies fn to the payment of each event's order seen for the first time, with the
// payments locked in order id order so that concurrent batches never deadlock, and stores what
// fn announced as changed.
func (r *Repository) Update(ctx context.Context, queue string, batch []OrderEvent, fn UpdateFunc) error {
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		fresh, err := inbox.Claim(ctx, tx, queue, eventIDs(batch, func(e OrderEvent) string { return e.EventID }))
		if err != nil {
			return err
		}
		var orders []string
		for _, ev := range batch {
			if fresh[ev.EventID] {
				orders = append(orders, ev.OrderID)
			}
		}
		if len(orders) == 0 {
			return nil
		}
		slices.Sort(orders)
		orders = slices.Compact(orders)
		payments, err := lockByOrders(ctx, tx, orders)
		if err != nil {
			return err
		}
		var events []outbox.Event
		changed := map[string]*payment.Payment{}
		for _, ev := range batch {
			if !fresh[ev.EventID] {
				continue
			}
			delete(fresh, ev.EventID)
			p := payments[ev.OrderID]
			announced, err := fn(ev, p)
			if err != nil {
				return err
			}
			if len(announced) > 0 && p != nil {
				changed[p.ID()] = p
			}
			events = append(events, announced...)
		}
		if err := save(ctx, tx, changed); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, events...)
	})
}

// lockByOrders loads and locks the payments of orders (sorted), keyed by order id.
func lockByOrders(ctx context.Context, tx pgx.Tx, orders []string) (map[string]*payment.Payment, error) {
	rows, err := tx.Query(ctx, `
		SELECT id::text, order_id::text, method, amount_minor, status, COALESCE(reason, '')
		FROM payments WHERE order_id = ANY($1::uuid[]) ORDER BY order_id FOR UPDATE`, orders)
	if err != nil {
		return nil, fmt.Errorf("lock payments: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*payment.Payment, error) {
		var id, order, method, status, reason string
		var amount int64
		if err := row.Scan(&id, &order, &method, &amount, &status, &reason); err != nil {
			return nil, err
		}
		return payment.Load(id, order, method, amount, payment.Status(status), reason), nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock payments: %w", err)
	}
	byOrder := make(map[string]*payment.Payment, len(list))
	for _, p := range list {
		byOrder[p.OrderID()] = p
	}
	return byOrder, nil
}

func save(ctx context.Context, tx pgx.Tx, payments map[string]*payment.Payment) error {
	if len(payments) == 0 {
		return nil
	}
	var ids, statuses, reasons []string
	for _, p := range payments {
		ids, statuses, reasons = append(ids, p.ID()), append(statuses, string(p.Status())), append(reasons, p.Reason())
	}
	_, err := tx.Exec(ctx, `
		UPDATE payments AS p SET status = u.status, reason = u.reason, updated_at = now()
		FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
		WHERE p.id = u.id`, ids, statuses, nullIfEmpty(reasons))
	if err != nil {
		return fmt.Errorf("update payments: %w", err)
	}
	return nil
}

func eventIDs[T any](batch []T, id func(T) string) []string {
	ids := make([]string, len(batch))
	for i, item := range batch {
		ids[i] = id(item)
	}
	return ids
}

// nullIfEmpty stores an empty reason as NULL: no reason rather than a blank one.
func nullIfEmpty(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		if ss[i] != "" {
			out[i] = &ss[i]
		}
	}
	return out
}
