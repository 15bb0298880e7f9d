// Package postgres stores payments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration payment-service's database needs, in order.
var Migrations = []database.Migrations{
	{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")},
	inbox.Migrations,
	outbox.Migrations,
}

// Store reads and writes payments within one transaction.
type Store struct {
	tx database.Querier
}

// Bind returns the store of tx.
func Bind(tx database.Querier) *Store { return &Store{tx: tx} }

// Insert stores new payments, except for orders that have one already, and returns the ids of
// those it stored.
func (s *Store) Insert(ctx context.Context, payments []*payment.Payment) (map[string]bool, error) {
	if len(payments) == 0 {
		return nil, nil
	}
	// Inserting in order id order makes concurrent batches wait on each other's unique keys
	// in one direction only, never in a cycle.
	sorted := slices.SortedFunc(slices.Values(payments), func(a, b *payment.Payment) int { return strings.Compare(a.OrderID(), b.OrderID()) })
	var ids, orders, methods, statuses, reasons []string
	var amounts []int64
	for _, p := range sorted {
		ids, orders, methods = append(ids, p.ID()), append(orders, p.OrderID()), append(methods, p.Method())
		amounts, statuses, reasons = append(amounts, p.AmountMinor()), append(statuses, string(p.Status())), append(reasons, p.Reason())
	}
	rows, err := s.tx.Query(ctx, `
		INSERT INTO payments (id, order_id, method, amount_minor, status, reason)
		SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[])
		ON CONFLICT (order_id) DO NOTHING
		RETURNING id::text`, ids, orders, methods, amounts, statuses, nullIfEmpty(reasons))
	if err != nil {
		return nil, fmt.Errorf("insert payments: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert payments: %w", err)
	}
	stored := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		stored[id] = true
	}
	return stored, nil
}

// Lock loads and locks the payments of orders, keyed by order id; locking in order id order
// means concurrent batches never deadlock.
func (s *Store) Lock(ctx context.Context, orderIDs []string) (map[string]*payment.Payment, error) {
	orderIDs = slices.Compact(slices.Sorted(slices.Values(orderIDs)))
	rows, err := s.tx.Query(ctx, `
		SELECT id::text, order_id::text, method, amount_minor, status, COALESCE(reason, '')
		FROM payments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`, orderIDs)
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

// Save writes the status and reason of changed payments, in a statement that may wait for the commit.
func (s *Store) Save(ctx context.Context, payments []*payment.Payment) error {
	if len(payments) == 0 {
		return nil
	}
	var ids, statuses, reasons []string
	for _, p := range payments {
		ids, statuses, reasons = append(ids, p.ID()), append(statuses, string(p.Status())), append(reasons, p.Reason())
	}
	b := &pgx.Batch{}
	b.Queue(`
		UPDATE payments AS p SET status = u.status, reason = u.reason, updated_at = now()
		FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
		WHERE p.id = u.id`, ids, statuses, nullIfEmpty(reasons))
	if err := database.Write(ctx, s.tx, b); err != nil {
		return fmt.Errorf("update payments: %w", err)
	}
	return nil
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
