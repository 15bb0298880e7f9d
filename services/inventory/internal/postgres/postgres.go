// Package postgres stores inventory-service's products and reservations. Its Store works inside
// the transaction of a unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/inventory"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration inventory-service's database needs, in order; they seed the
// demo products.
var Migrations = unitofwork.Migrations(migrations)

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

// Store reads and changes stock and reservations within the transaction of a unit of work: it
// reads ahead the reservations of a batch's orders and the products they hold or its events
// name, locked, and writes what the rules changed with the commit.
type Store struct {
	tx           database.Querier
	reservations unitofwork.Rows[*inventory.Reservation]
	products     map[string]*inventory.Product // by id; nil: known not to exist
	changed      map[string]*inventory.Product
}

// NewStore returns the store of tx, for the rules and the runner.
func NewStore(tx database.Querier) *Store {
	return &Store{tx: tx, products: map[string]*inventory.Product{}, changed: map[string]*inventory.Product{}}
}

const selectReservations = `
	SELECT r.id::text, r.order_id::text, r.status, i.product_id::text, i.quantity
	FROM reservations r LEFT JOIN reservation_items i ON i.reservation_id = r.id
	WHERE r.order_id = ANY($1::text[]::uuid[])
	ORDER BY r.order_id, i.product_id
	FOR UPDATE OF r`

// Prepare reads and locks the reservations of the batch's orders, then, in id order, the
// products their held reservations hold and those its payment.approved events name
// (unitofwork.Tx).
func (s *Store) Prepare(b *pgx.Batch, batch unitofwork.Batch) {
	s.reservations.Prepare(b, selectReservations, batch.OrderIDs, s.scanReservations)
	var named []string
	for _, ev := range batch.Events {
		if ev, ok := ev.(interface{ GetItems() []*orderv1.OrderLine }); ok {
			for _, line := range ev.GetItems() {
				if id, err := inventory.ParseProductID(line.GetProductId()); err == nil {
					named = append(named, id)
				}
			}
		}
	}
	for _, id := range named {
		s.products[id] = nil
	}
	b.Queue(`
		SELECT id::text, name, quantity_total, quantity_reserved FROM products
		WHERE id = ANY($1::text[]::uuid[]) OR id IN (
			SELECT i.product_id FROM reservations r JOIN reservation_items i ON i.reservation_id = r.id
			WHERE r.order_id = ANY($2::text[]::uuid[]) AND r.status = $3)
		ORDER BY id FOR UPDATE`, named, batch.OrderIDs, inventory.Held).Query(s.scanProducts)
}

func (s *Store) scanReservations(rows pgx.Rows) error {
	var id, orderID, status string
	var productID *string
	var quantity *int64
	_, err := pgx.ForEachRow(rows, []any{&id, &orderID, &status, &productID, &quantity}, func() error {
		r, _ := s.reservations.Get(orderID)
		if r == nil {
			r = &inventory.Reservation{ID: id, OrderID: orderID, Status: inventory.Status(status)}
			s.reservations.Found(orderID, r)
		}
		if productID != nil {
			r.Items = append(r.Items, inventory.Item{ProductID: *productID, Quantity: *quantity})
		}
		return nil
	})
	return err
}

func (s *Store) scanProducts(rows pgx.Rows) error {
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*inventory.Product, error) { return scanProduct(row) })
	for _, p := range list {
		s.products[p.ID()] = p
	}
	return err
}

// Reservation returns the reservation of an order, or nil.
func (s *Store) Reservation(ctx context.Context, orderID string) (*inventory.Reservation, error) {
	return s.reservations.Read(ctx, s.tx, selectReservations, orderID, s.scanReservations)
}

// Products returns the products with the given ids that exist, locked in id order.
func (s *Store) Products(ctx context.Context, ids []string) (map[string]*inventory.Product, error) {
	var missing []string
	for _, id := range ids {
		if _, known := s.products[id]; !known {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		locked, err := lockProducts(ctx, s.tx, missing)
		if err != nil {
			return nil, err
		}
		for _, id := range missing {
			s.products[id] = locked[id]
		}
	}
	out := make(map[string]*inventory.Product, len(ids))
	for _, id := range ids {
		if p := s.products[id]; p != nil {
			out[id] = p
		}
	}
	return out, nil
}

// AddReservation stores a new reservation at the commit.
func (s *Store) AddReservation(r *inventory.Reservation) { s.reservations.Add(r.OrderID, r) }

// SaveReservation writes a reservation's status at the commit.
func (s *Store) SaveReservation(r *inventory.Reservation) { s.reservations.Save(r.OrderID, r) }

// SaveStock writes the reserved quantity of products at the commit.
func (s *Store) SaveStock(products map[string]*inventory.Product) { maps.Copy(s.changed, products) }

// Flush queues the writes (unitofwork.Tx): new reservations and their items, changed
// statuses, changed stock. The order locks the runner holds keep a new reservation's order id
// free from this release's replicas. A replica of the previous release takes no such lock: when
// it inserts first, the unique key fails this unit of work, which is tried again and reads its
// row.
func (s *Store) Flush(b *pgx.Batch) error {
	if added := s.reservations.Added(); len(added) > 0 {
		var ids, orders, statuses, itemRes, itemProducts []string
		var quantities []int64
		for _, r := range added {
			ids, orders, statuses = append(ids, r.ID), append(orders, r.OrderID), append(statuses, string(r.Status))
			for _, it := range r.Items {
				itemRes, itemProducts, quantities = append(itemRes, r.ID), append(itemProducts, it.ProductID), append(quantities, it.Quantity)
			}
		}
		b.Queue(`
			INSERT INTO reservations (id, order_id, status)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[])`, ids, orders, statuses)
		if len(itemRes) > 0 {
			b.Queue(`
				INSERT INTO reservation_items (reservation_id, product_id, quantity)
				SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::int[])`, itemRes, itemProducts, quantities)
		}
	}
	if saved := s.reservations.Saved(); len(saved) > 0 {
		var ids, statuses []string
		for _, r := range saved {
			ids, statuses = append(ids, r.ID), append(statuses, string(r.Status))
		}
		b.Queue(`
			UPDATE reservations r SET status = u.status, updated_at = now()
			FROM unnest($1::text[]::uuid[], $2::text[]) AS u(id, status) WHERE r.id = u.id`, ids, statuses)
	}
	if len(s.changed) > 0 {
		ids := slices.Sorted(maps.Keys(s.changed))
		reserved := make([]int64, len(ids))
		for i, id := range ids {
			reserved[i] = s.changed[id].Reserved()
		}
		b.Queue(`
			UPDATE products p SET quantity_reserved = u.reserved, updated_at = now()
			FROM unnest($1::text[]::uuid[], $2::bigint[]) AS u(id, reserved)
			WHERE p.id = u.id`, ids, reserved)
	}
	return nil
}

// Committed does nothing: no one watches stock (unitofwork.Tx).
func (s *Store) Committed() {}

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

func scanProduct(row pgx.Row) (*inventory.Product, error) {
	var id, name string
	var total, reserved int64
	if err := row.Scan(&id, &name, &total, &reserved); err != nil {
		return nil, err
	}
	return inventory.Load(id, name, total, reserved), nil
}
