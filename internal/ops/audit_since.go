package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAuditBatch is how many orders AuditSince checks at a time.
const DefaultAuditBatch = 2000

const nilUUID = "00000000-0000-0000-0000-000000000000"

// AuditSince checks the same invariants as Check with the same since, reading only what it needs:
//   - the orders created since then, a batch at a time in (created_at, id) order (the order
//     database's created_at index), each batch joined to its payments, reservations and
//     shipments by order id;
//   - the payments, reservations and shipments created since then, whose order ids are looked
//     up in the order database a batch at a time: those of no order are orphans (an orphan
//     created before since is left to the full audit);
//   - with stock, the stock totals, which hold over everything, as sums the databases compute
//     (each a scan of every order, or reservation: seconds on millions).
//
// Memory stays bounded by the batch and by the records created since then, whatever the size
// of the tables.
func AuditSince(ctx context.Context, dbs Databases, since time.Time, batch int, stock bool) ([]Violation, error) {
	var vs []Violation
	lastAt, lastID := since, nilUUID
	for {
		orders, err := query(ctx, dbs.Order, "orders", `
			SELECT id::text, status, created_at FROM orders
			WHERE created_at >= $1 AND (created_at, id) > ($1, $2::uuid)
			ORDER BY created_at, id LIMIT $3`, func(row pgx.CollectableRow) (Order, error) {
			var o Order
			err := row.Scan(&o.ID, &o.Status, &o.CreatedAt)
			return o, err
		}, lastAt, lastID, batch)
		if err != nil {
			return nil, err
		}
		if len(orders) == 0 {
			break
		}
		s, err := loadBatch(ctx, dbs, orders)
		if err != nil {
			return nil, err
		}
		vs = append(vs, checkOrders(s, since)...)
		last := orders[len(orders)-1]
		lastAt, lastID = last.CreatedAt, last.ID
		if len(orders) < batch {
			break
		}
	}

	for _, t := range []struct{ rule, what, table string }{
		{RuleOrphanPayment, "payment", "payments"},
		{RuleOrphanReservation, "reservation", "reservations"},
		{RuleOrphanShipment, "shipment", "shipments"},
	} {
		db := dbs.Payment
		switch t.table {
		case "reservations":
			db = dbs.Inventory
		case "shipments":
			db = dbs.Shipping
		}
		rs, err := query(ctx, db, t.table,
			`SELECT id::text, order_id::text, status FROM `+t.table+` WHERE created_at >= $1 ORDER BY id`,
			pgx.RowToStructByPos[Record], since)
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(rs); start += batch {
			part := rs[start:min(start+batch, len(rs))]
			known, err := knownOrders(ctx, dbs.Order, part)
			if err != nil {
				return nil, err
			}
			vs = append(vs, orphans(t.rule, t.what, part, func(id string) bool { return known[id] })...)
		}
	}

	if stock {
		totals, err := stockTotals(ctx, dbs)
		if err != nil {
			return nil, err
		}
		vs = append(vs, totals...)
	}
	sortViolations(vs)
	return vs, nil
}

// loadBatch reads the payments, reservations and shipments of orders (the per-order rules need
// no items: the stock totals are summed up by the databases).
func loadBatch(ctx context.Context, dbs Databases, orders []Order) (*Snapshot, error) {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	s := &Snapshot{Orders: orders}
	var err error
	records := `SELECT id::text, order_id::text, status FROM %s WHERE order_id = ANY($1::uuid[]) ORDER BY id`
	if s.Payments, err = query(ctx, dbs.Payment, "payments", fmt.Sprintf(records, "payments"), pgx.RowToStructByPos[Record], ids); err != nil {
		return nil, err
	}
	if s.Shipments, err = query(ctx, dbs.Shipping, "shipments", fmt.Sprintf(records, "shipments"), pgx.RowToStructByPos[Record], ids); err != nil {
		return nil, err
	}
	reservations, err := query(ctx, dbs.Inventory, "reservations", fmt.Sprintf(records, "reservations"), pgx.RowToStructByPos[Record], ids)
	if err != nil {
		return nil, err
	}
	for _, r := range reservations {
		s.Reservations = append(s.Reservations, Reservation{Record: r})
	}
	return s, nil
}

// knownOrders returns which of the records' orders the order database has.
func knownOrders(ctx context.Context, q Querier, rs []Record) (map[string]bool, error) {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.OrderID
	}
	found, err := query(ctx, q, "orders", `SELECT id::text FROM orders WHERE id = ANY($1::uuid[])`, pgx.RowTo[string], ids)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(found))
	for _, id := range found {
		known[id] = true
	}
	return known, nil
}

// stockTotals compares the stock totals as the databases sum them up.
func stockTotals(ctx context.Context, dbs Databases) ([]Violation, error) {
	type total struct {
		ProductID string
		Quantity  int64
	}
	sums := func(q Querier, table, sql string) (map[string]int64, error) {
		rows, err := query(ctx, q, table, sql, pgx.RowToStructByPos[total])
		if err != nil {
			return nil, err
		}
		m := make(map[string]int64, len(rows))
		for _, r := range rows {
			m[r.ProductID] = r.Quantity
		}
		return m, nil
	}
	reserved, err := sums(dbs.Inventory, "products", `SELECT id::text, quantity_reserved FROM products`)
	if err != nil {
		return nil, err
	}
	held, err := sums(dbs.Inventory, "reservation_items", `
		SELECT ri.product_id::text, sum(ri.quantity)::bigint FROM reservation_items ri
		JOIN reservations r ON r.id = ri.reservation_id WHERE r.status = 'RESERVED' GROUP BY ri.product_id`)
	if err != nil {
		return nil, err
	}
	sold, err := sums(dbs.Order, "order_items", `
		SELECT oi.product_id::text, sum(oi.quantity)::bigint FROM order_items oi
		JOIN orders o ON o.id = oi.order_id WHERE o.status = 'CONFIRMED' GROUP BY oi.product_id`)
	if err != nil {
		return nil, err
	}
	return stockViolations(reserved, held, sold), nil
}
