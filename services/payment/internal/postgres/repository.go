// Package postgres stores payments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration payment-service's database needs, in order.
var Migrations = unitofwork.Migrations(migrations)

// Store reads and writes payments within the transaction of a unit of work: it reads the
// payments of a batch's orders ahead, and writes what the rules added and changed with the
// commit, a statement per kind of write.
type Store struct {
	tx       database.Querier
	payments unitofwork.Rows[*payment.Payment]
}

// NewStore returns the store of tx, for the rules and the runner.
func NewStore(tx database.Querier) *Store { return &Store{tx: tx} }

const selectPayments = `
	SELECT id::text, order_id::text, method, amount_minor, status, COALESCE(reason, '')
	FROM payments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`

// Prepare reads and locks the payments of the batch's orders (unitofwork.Tx).
func (s *Store) Prepare(b *pgx.Batch, batch unitofwork.Batch) {
	s.payments.Prepare(b, selectPayments, batch.OrderIDs, s.scan)
}

func (s *Store) scan(rows pgx.Rows) error {
	var id, order, method, status, reason string
	var amount int64
	_, err := pgx.ForEachRow(rows, []any{&id, &order, &method, &amount, &status, &reason}, func() error {
		s.payments.Found(order, payment.Load(id, order, method, amount, payment.Status(status), reason))
		return nil
	})
	return err
}

// Payment returns the payment of an order, nil when it has none.
func (s *Store) Payment(ctx context.Context, orderID string) (*payment.Payment, error) {
	return s.payments.Read(ctx, s.tx, selectPayments, orderID, s.scan)
}

// Add stores a new payment at the commit.
func (s *Store) Add(p *payment.Payment) { s.payments.Add(p.OrderID(), p) }

// Save writes a changed payment at the commit.
func (s *Store) Save(p *payment.Payment) { s.payments.Save(p.OrderID(), p) }

// Flush queues the inserts and updates (unitofwork.Tx). The order locks the runner holds keep
// an insert's order id free from this release's replicas. A replica of the previous release
// takes no such lock: when it inserts first, the unique key fails this unit of work, which is
// tried again and reads its row.
func (s *Store) Flush(b *pgx.Batch) error {
	if added := s.payments.Added(); len(added) > 0 {
		var ids, orders, methods, statuses, reasons []string
		var amounts []int64
		for _, p := range added {
			ids, orders, methods = append(ids, p.ID()), append(orders, p.OrderID()), append(methods, p.Method())
			amounts, statuses, reasons = append(amounts, p.AmountMinor()), append(statuses, string(p.Status())), append(reasons, p.Reason())
		}
		b.Queue(`
			INSERT INTO payments (id, order_id, method, amount_minor, status, reason)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[])`,
			ids, orders, methods, amounts, statuses, nullIfEmpty(reasons))
	}
	if saved := s.payments.Saved(); len(saved) > 0 {
		var ids, statuses, reasons []string
		for _, p := range saved {
			ids, statuses, reasons = append(ids, p.ID()), append(statuses, string(p.Status())), append(reasons, p.Reason())
		}
		b.Queue(`
			UPDATE payments AS p SET status = u.status, reason = u.reason, updated_at = now()
			FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
			WHERE p.id = u.id`, ids, statuses, nullIfEmpty(reasons))
	}
	return nil
}

// Committed does nothing: no one watches payments (unitofwork.Tx).
func (s *Store) Committed() {}

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
