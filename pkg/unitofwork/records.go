package unitofwork

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
)

// Table is a table of at most one record per order (payments, shipments): how a Records store
// reads, inserts and updates its records.
type Table[R comparable] struct {
	// Select reads and locks the records of the orders $1 (text[]), in order id order.
	Select string
	// Scan returns the record of one row of Select.
	Scan pgx.RowToFunc[R]
	// OrderID returns the order of a record.
	OrderID func(R) string
	// Insert queues into b the insert of the records the rules added, none of them stored.
	Insert func(b *pgx.Batch, added []R)
	// Update queues into b the update of the stored records the rules changed.
	Update func(b *pgx.Batch, saved []R)
}

// Records reads and writes the records of a Table within the transaction of a unit of work: it
// reads the records of a batch's orders ahead, and writes what the rules added and changed with
// the commit, a statement per kind of write. It is the rules' store (rules.Records) and the
// runner's (Tx).
type Records[R comparable] struct {
	tx    database.Querier
	table *Table[R]
	rows  Rows[R]
}

// NewRecords returns the store of table's records within tx.
func NewRecords[R comparable](tx database.Querier, table *Table[R]) *Records[R] {
	return &Records[R]{tx: tx, table: table}
}

// Prepare reads and locks the records of the batch's orders (Tx).
func (s *Records[R]) Prepare(b *pgx.Batch, batch Batch) {
	s.rows.Prepare(b, s.table.Select, batch.OrderIDs, s.scan)
}

func (s *Records[R]) scan(rows pgx.Rows) error {
	records, err := pgx.CollectRows(rows, s.table.Scan)
	for _, r := range records {
		s.rows.Found(s.table.OrderID(r), r)
	}
	return err
}

// Get returns the record of an order, the zero R (nil) when it has none.
func (s *Records[R]) Get(ctx context.Context, orderID string) (R, error) {
	return s.rows.Read(ctx, s.tx, s.table.Select, orderID, s.scan)
}

// Add stores a new record at the commit.
func (s *Records[R]) Add(r R) { s.rows.Add(s.table.OrderID(r), r) }

// Save writes a changed record at the commit.
func (s *Records[R]) Save(r R) { s.rows.Save(s.table.OrderID(r), r) }

// Flush queues the inserts and updates (Tx). The order locks the runner holds keep an insert's
// order id free from this release's replicas. A replica of the previous release takes no such
// lock: when it inserts first, the unique key fails this unit of work, which is tried again and
// reads its row.
func (s *Records[R]) Flush(b *pgx.Batch) error {
	if added := s.rows.Added(); len(added) > 0 {
		s.table.Insert(b, added)
	}
	if saved := s.rows.Saved(); len(saved) > 0 {
		s.table.Update(b, saved)
	}
	return nil
}

// Committed does nothing: no one watches the records (Tx).
func (s *Records[R]) Committed() {}
