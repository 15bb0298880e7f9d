package unitofwork

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
)

// Rows is one table's rows in a unit of work, by order id: those its store read ahead, then
// as the rules left them, with what they added and changed, for the store's Flush.
type Rows[V comparable] struct {
	byOrder      map[string]V
	added, saved []V
}

// Expect records that the rows of orderIDs are being read: an order left without one has none.
func (r *Rows[V]) Expect(orderIDs []string) {
	if r.byOrder == nil {
		r.byOrder = make(map[string]V, len(orderIDs))
	}
	for _, id := range orderIDs {
		var none V
		r.byOrder[id] = none
	}
}

// Found records the row read for an order.
func (r *Rows[V]) Found(orderID string, v V) { r.byOrder[orderID] = v }

// Get returns an order's row, and whether it was read (or written): when not, the store reads it.
func (r *Rows[V]) Get(orderID string) (v V, known bool) {
	v, known = r.byOrder[orderID]
	return v, known
}

// Add records a new row of an order, to be inserted.
func (r *Rows[V]) Add(orderID string, v V) {
	r.Expect(nil)
	r.byOrder[orderID] = v
	r.added = append(r.added, v)
}

// Save records a changed row of an order, to be updated, unless it is new already.
func (r *Rows[V]) Save(orderID string, v V) {
	r.Expect(nil)
	r.byOrder[orderID] = v
	if !slices.Contains(r.added, v) && !slices.Contains(r.saved, v) {
		r.saved = append(r.saved, v)
	}
}

// Added returns the rows to insert.
func (r *Rows[V]) Added() []V { return r.added }

// Saved returns the rows to update.
func (r *Rows[V]) Saved() []V { return r.saved }

// Prepare queues into b the statement that reads the rows of orderIDs (sql, taking them as $1),
// whose result scan records with Found: a store's Prepare.
func (r *Rows[V]) Prepare(b *pgx.Batch, sql string, orderIDs []string, scan func(pgx.Rows) error) {
	r.Expect(orderIDs)
	b.Queue(sql, orderIDs).Query(scan)
}

// Read returns an order's row as this unit of work knows it, or else reads it through q with
// the statement and scan of Prepare: one round trip for an order not read ahead.
func (r *Rows[V]) Read(ctx context.Context, q database.Querier, sql, orderID string, scan func(pgx.Rows) error) (V, error) {
	if v, known := r.Get(orderID); known {
		return v, nil
	}
	r.Expect([]string{orderID})
	rows, err := q.Query(ctx, sql, []string{orderID})
	if err == nil {
		err = scan(rows)
	}
	v, _ := r.Get(orderID)
	if err != nil {
		return v, fmt.Errorf("read order %s: %w", orderID, err)
	}
	return v, nil
}
