package rules

import (
	"context"

	"github.com/ordersaga/ordersaga/pkg/failure"
)

// Records is the store of a service that keeps at most one record per order (payment-service
// its payments, shipping-service its shipments), as its rules see it within the event's unit
// of work: the records of the event's order are read ahead and locked by then, and writes take
// effect at the commit.
type Records[R any] interface {
	// Get returns the record of an order, as this unit of work left it, or the zero R (nil)
	// when the order has none.
	Get(ctx context.Context, orderID string) (R, error)
	// Add stores a new record; its order has none.
	Add(r R)
	// Save writes a changed record.
	Save(r R)
}

// AddFirst gives an order its record the first time one of its events asks for one: the first
// event decides the record for good, and any later one finds it. When the order has no record,
// AddFirst adds the one decide returns and reports it added; when it has one, it returns it and
// decide is not called. An error of decide is permanent: the event can never apply.
func AddFirst[R comparable](ctx context.Context, s Records[R], orderID string, decide func() (R, error)) (r R, added bool, err error) {
	var none R
	if r, err = s.Get(ctx, orderID); err != nil || r != none {
		return r, false, err
	}
	if r, err = decide(); err != nil {
		return none, false, failure.Permanent(err)
	}
	s.Add(r)
	return r, true, nil
}

// BeginRecords starts a unit of work on t, a table of one record per order keyed by orderID,
// for Memory: the store the rules see, and its end, which makes what was written through the
// store take effect when commit is true and drops it otherwise.
func BeginRecords[R any](t *Table[R], orderID func(R) string) (store Records[R], end func(commit bool)) {
	tx := &recordsTx[R]{rows: t.Begin(), orderID: orderID}
	return tx, tx.rows.End
}

// recordsTx is the Records of one unit of work over a Table.
type recordsTx[R any] struct {
	rows    *TableTx[R]
	orderID func(R) string
}

func (t *recordsTx[R]) Get(_ context.Context, orderID string) (R, error) {
	r, _ := t.rows.Get(orderID)
	return r, nil
}

func (t *recordsTx[R]) Add(r R)  { t.rows.Put(t.orderID(r), r) }
func (t *recordsTx[R]) Save(r R) { t.rows.Put(t.orderID(r), r) }
