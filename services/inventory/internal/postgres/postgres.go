// Package postgres stores inventory-service's products and reservations. Its Store works inside
// the transaction of a unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration inventory-service's database needs, in order; they seed the
// demo products.
var Migrations = []database.Migrations{
	{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")},
	inbox.Migrations,
	outbox.Migrations,
}

// Reservation statuses.
const (
	StatusReserved = "RESERVED"
	StatusReleased = "RELEASED"
	// StatusCancelled is the tombstone of an order cancelled before anything was reserved for
	// it: it holds no items and takes the order's one reservation for good.
	StatusCancelled = "CANCELLED"
)

// Repository reads and changes stock.
type Repository struct {
	pool *pgxpool.Pool
}

// NewRepository returns a repository on pool.
func NewRepository(pool *pgxpool.Pool) *Repository {
	return &Repository{pool: pool}
}

// Product returns a product, or an error wrapping inventory.ErrUnknownProduct.
func (r *Repository) Product(ctx context.Context, id string) (*inventory.Product, error) {
	p, err := scanProduct(r.pool.QueryRow(ctx, `
		SELECT id::text, name, quantity_total, quantity_reserved FROM products WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w %s", inventory.ErrUnknownProduct, id)
	}
	if err != nil {
		return nil, fmt.Errorf("select product: %w", err)
	}
	return p, nil
}

// SetStock sets a product's total stock, creating the product when it does not exist.
func (r *Repository) SetStock(ctx context.Context, id string, total int64) (*inventory.Product, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// A product created here and then refused by the domain goes away with the rollback.
	if _, err := tx.Exec(ctx, `
		INSERT INTO products (id, quantity_total) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING`, id); err != nil {
		return nil, fmt.Errorf("insert product: %w", err)
	}
	p, err := scanProduct(tx.QueryRow(ctx, `
		SELECT id::text, name, quantity_total, quantity_reserved FROM products WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("lock product: %w", err)
	}
	if err := p.SetTotal(total); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE products SET quantity_total = $2, updated_at = now() WHERE id = $1`, id, p.Total()); err != nil {
		return nil, fmt.Errorf("update product: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return p, nil
}

// Store reads and changes stock and reservations within one transaction.
type Store struct {
	tx database.Querier
}

// Bind returns the store of tx.
func Bind(tx database.Querier) *Store { return &Store{tx: tx} }

// LockProducts locks the products with the given ids in id order and returns those that exist.
// Every rule takes them after its orders' reservations, so that concurrent batches wait for each
// other in one direction and never deadlock.
func (s *Store) LockProducts(ctx context.Context, ids []string) (map[string]*inventory.Product, error) {
	return lockProducts(ctx, s.tx, ids)
}

// ClaimReservations inserts a RESERVED reservation without items for each of the orders that
// has none, in order id order, and returns its id by order. The unique order id makes a
// concurrent insert of the same order wait for this transaction, and this one for it.
func (s *Store) ClaimReservations(ctx context.Context, orderIDs []string) (map[string]string, error) {
	if len(orderIDs) == 0 {
		return nil, nil
	}
	orderIDs = slices.Compact(slices.Sorted(slices.Values(orderIDs)))
	rows, err := s.tx.Query(ctx, `
		INSERT INTO reservations (id, order_id, status)
		SELECT id, order_id, $3 FROM unnest($1::text[]::uuid[], $2::text[]::uuid[]) AS r(id, order_id)
		ORDER BY order_id
		ON CONFLICT (order_id) DO NOTHING
		RETURNING order_id::text, id::text`, newIDs(len(orderIDs)), orderIDs, StatusReserved)
	if err != nil {
		return nil, fmt.Errorf("claim reservations: %w", err)
	}
	claimed := map[string]string{}
	var orderID, id string
	if _, err := pgx.ForEachRow(rows, []any{&orderID, &id}, func() error {
		claimed[orderID] = id
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claim reservations: %w", err)
	}
	return claimed, nil
}

// SaveReservations stores the items of claimed reservations and deletes the claimed
// reservations that hold nothing, in statements that may wait for the commit.
func (s *Store) SaveReservations(ctx context.Context, held []inventory.Reservation, unused []string) error {
	b := &pgx.Batch{}
	if len(held) > 0 {
		var res, products []string
		var quantities []int64
		for _, r := range held {
			for _, it := range r.Items {
				res, products, quantities = append(res, r.ID), append(products, it.ProductID), append(quantities, it.Quantity)
			}
		}
		b.Queue(`
			INSERT INTO reservation_items (reservation_id, product_id, quantity)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::int[])`, res, products, quantities)
	}
	if len(unused) > 0 {
		b.Queue(`DELETE FROM reservations WHERE id = ANY($1::text[]::uuid[])`, unused)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := database.Write(ctx, s.tx, b); err != nil {
		return fmt.Errorf("save reservations: %w", err)
	}
	return nil
}

// SaveStock writes the reserved quantity of products, in one statement that may wait for the commit.
func (s *Store) SaveStock(ctx context.Context, products []*inventory.Product) error {
	if len(products) == 0 {
		return nil
	}
	ids := make([]string, len(products))
	reserved := make([]int64, len(products))
	for i, p := range products {
		ids[i], reserved[i] = p.ID(), p.Reserved()
	}
	b := &pgx.Batch{}
	b.Queue(`
		UPDATE products p SET quantity_reserved = u.reserved, updated_at = now()
		FROM unnest($1::text[]::uuid[], $2::bigint[]) AS u(id, reserved)
		WHERE p.id = u.id`, ids, reserved)
	if err := database.Write(ctx, s.tx, b); err != nil {
		return fmt.Errorf("update products: %w", err)
	}
	return nil
}

// InsertTombstones stores a CANCELLED reservation without items for each of the orders that has
// no reservation and locks the reservation of each of the others, all in order id order in one
// statement, and returns the orders tombstoned.
func (s *Store) InsertTombstones(ctx context.Context, orderIDs []string) (map[string]bool, error) {
	if len(orderIDs) == 0 {
		return nil, nil
	}
	orderIDs = slices.Compact(slices.Sorted(slices.Values(orderIDs)))
	// DO UPDATE with a condition that never holds updates nothing but locks the row it meets.
	rows, err := s.tx.Query(ctx, `
		INSERT INTO reservations (id, order_id, status)
		SELECT id, order_id, $3 FROM unnest($1::text[]::uuid[], $2::text[]::uuid[]) AS r(id, order_id)
		ORDER BY order_id
		ON CONFLICT (order_id) DO UPDATE SET status = reservations.status WHERE false
		RETURNING order_id::text`, newIDs(len(orderIDs)), orderIDs, StatusCancelled)
	if err != nil {
		return nil, fmt.Errorf("insert tombstones: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert tombstones: %w", err)
	}
	out := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		out[id] = true
	}
	return out, nil
}

// LockReserved loads and locks the RESERVED reservations of orders, in order id order. A
// concurrent release of the same order waits here and then finds it RELEASED.
func (s *Store) LockReserved(ctx context.Context, orderIDs []string) ([]inventory.Reservation, error) {
	rows, err := s.tx.Query(ctx, `
		SELECT r.id::text, r.order_id::text, i.product_id::text, i.quantity
		FROM reservations r JOIN reservation_items i ON i.reservation_id = r.id
		WHERE r.order_id = ANY($1::text[]::uuid[]) AND r.status = $2
		ORDER BY r.order_id, i.product_id
		FOR UPDATE OF r`, orderIDs, StatusReserved)
	if err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}
	var out []inventory.Reservation
	index := map[string]int{}
	var resID, orderID, productID string
	var quantity int64
	_, err = pgx.ForEachRow(rows, []any{&resID, &orderID, &productID, &quantity}, func() error {
		i, ok := index[resID]
		if !ok {
			i = len(out)
			index[resID] = i
			out = append(out, inventory.Reservation{ID: resID, OrderID: orderID})
		}
		out[i].Items = append(out[i].Items, inventory.Item{ProductID: productID, Quantity: quantity})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}
	return out, nil
}

// MarkReleased sets reservations RELEASED, in a statement that may wait for the commit.
func (s *Store) MarkReleased(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE reservations SET status = $2, updated_at = now() WHERE id = ANY($1::text[]::uuid[])`, ids, StatusReleased)
	if err := database.Write(ctx, s.tx, b); err != nil {
		return fmt.Errorf("update reservations: %w", err)
	}
	return nil
}

// lockProducts locks the products with the given ids in id order and returns those that exist.
func lockProducts(ctx context.Context, tx database.Querier, ids []string) (map[string]*inventory.Product, error) {
	rows, err := tx.Query(ctx, `
		SELECT id::text, name, quantity_total, quantity_reserved FROM products
		WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*inventory.Product, error) {
		return scanProduct(row)
	})
	if err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	products := make(map[string]*inventory.Product, len(list))
	for _, p := range list {
		products[p.ID()] = p
	}
	return products, nil
}

// newIDs returns n time-ordered reservation ids, which keep index inserts local.
func newIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	return ids
}

func scanProduct(row pgx.Row) (*inventory.Product, error) {
	var id, name string
	var total, reserved int64
	if err := row.Scan(&id, &name, &total, &reserved); err != nil {
		return nil, err
	}
	return inventory.Load(id, name, total, reserved), nil
}
