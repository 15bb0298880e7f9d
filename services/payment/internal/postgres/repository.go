// Package postgres stores payments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
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
type Store = unitofwork.Records[*payment.Payment]

// NewStore returns the store of tx, for the rules and the runner.
func NewStore(tx database.Querier) *Store { return unitofwork.NewRecords(tx, payments) }

var payments = &unitofwork.Table[*payment.Payment]{
	Select: `
		SELECT id::text, order_id::text, method, amount_minor, status, COALESCE(reason, '')
		FROM payments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`,
	Scan:    scan,
	OrderID: (*payment.Payment).OrderID,
	Insert:  insert,
	Update:  update,
}

func scan(row pgx.CollectableRow) (*payment.Payment, error) {
	var id, order, method, status, reason string
	var amount int64
	if err := row.Scan(&id, &order, &method, &amount, &status, &reason); err != nil {
		return nil, err
	}
	return payment.Load(id, order, method, amount, payment.Status(status), reason), nil
}

func insert(b *pgx.Batch, added []*payment.Payment) {
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

func update(b *pgx.Batch, saved []*payment.Payment) {
	var ids, statuses, reasons []string
	for _, p := range saved {
		ids, statuses, reasons = append(ids, p.ID()), append(statuses, string(p.Status())), append(reasons, p.Reason())
	}
	b.Queue(`
		UPDATE payments AS p SET status = u.status, reason = u.reason, updated_at = now()
		FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
		WHERE p.id = u.id`, ids, statuses, nullIfEmpty(reasons))
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
