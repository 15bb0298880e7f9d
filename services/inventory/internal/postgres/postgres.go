// Package postgres stores inventory-service's products and reservations. Every batch of events
// is applied in one transaction together with its inbox claims and outbox events.
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

// Migrations creates the service's tables and seeds the demo products.
var Migrations = database.Migrations{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")}

// AllMigrations is every migration the service's database needs, in order.
func AllMigrations() []database.Migrations {
	return []database.Migrations{Migrations, inbox.Migrations, outbox.Migrations}
}

// Reservation statuses.
const (
	StatusReserved = "RESERVED"
	StatusReleased = "RELEASED"
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

// Order is a paid order whose items are to be reserved, as announced by one event.
type Order struct {
	EventID string
	OrderID string
	Items   []inventory.Item
}

// Outcome is what became of one order of a batch.
type Outcome struct {
	Order         Order
	ReservationID string // set when every item was reserved
	Err           error  // why nothing was reserved; wraps an inventory sentinel error
	Skipped       bool   // the order was reserved before: nothing happened and nothing is announced
}

// Reserve applies a batch of orders in one transaction: it claims their events in the inbox of
// queue, locks every product of the fresh ones in id order (so concurrent batches never
// deadlock), and reserves each order all or nothing, in batch order, so that a later order sees
// what an earlier one took. announce returns the event publishing an outcome; it is written to
// the outbox in the same transaction. The outcomes of fresh events are returned once committed.
func (r *Repository) Reserve(ctx context.Context, queue string, orders []Order, announce func(Outcome) outbox.Event) ([]Outcome, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	eventIDs := make([]string, len(orders))
	for i, o := range orders {
		eventIDs[i] = o.EventID
	}
	fresh, err := claim(ctx, tx, queue, eventIDs)
	if err != nil {
		return nil, err
	}
	var todo []Order
	var items []inventory.Item
	var orderIDs []string
	for _, o := range orders {
		if fresh[o.EventID] {
			delete(fresh, o.EventID) // an event repeated within the batch counts once
			todo = append(todo, o)
			items = append(items, o.Items...)
			orderIDs = append(orderIDs, o.OrderID)
		}
	}
	if len(todo) == 0 {
		return nil, commit(ctx, tx)
	}

	products, err := lockProducts(ctx, tx, inventory.ProductIDs(items))
	if err != nil {
		return nil, err
	}
	// Read after the locks: a concurrent batch reserving the same order has committed by now.
	reserved, err := reservedOrders(ctx, tx, orderIDs)
	if err != nil {
		return nil, err
	}

	var (
		outcomes                   []Outcome
		events                     []outbox.Event
		changed                    = map[string]bool{}
		resIDs, resOrders          []string
		itemResIDs, itemProductIDs []string
		itemQuantities             []int64
	)
	for _, o := range todo {
		out := Outcome{Order: o}
		if reserved[o.OrderID] {
			out.Skipped = true
			outcomes = append(outcomes, out)
			continue
		}
		if err := inventory.Reserve(products, o.Items); err != nil {
			out.Err = err
		} else {
			reserved[o.OrderID] = true
			out.ReservationID = uuid.NewString()
			resIDs = append(resIDs, out.ReservationID)
			resOrders = append(resOrders, o.OrderID)
			for _, it := range inventory.Merge(o.Items) {
				changed[it.ProductID] = true
				itemResIDs = append(itemResIDs, out.ReservationID)
				itemProductIDs = append(itemProductIDs, it.ProductID)
				itemQuantities = append(itemQuantities, it.Quantity)
			}
		}
		outcomes = append(outcomes, out)
		events = append(events, announce(out))
	}

	if err := updateReserved(ctx, tx, products, changed); err != nil {
		return nil, err
	}
	if len(resIDs) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO reservations (id, order_id, status)
			SELECT id, order_id, $3 FROM unnest($1::uuid[], $2::uuid[]) AS r(id, order_id)`,
			resIDs, resOrders, StatusReserved); err != nil {
			return nil, fmt.Errorf("insert reservations: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO reservation_items (reservation_id, product_id, quantity)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[])`,
			itemResIDs, itemProductIDs, itemQuantities); err != nil {
			return nil, fmt.Errorf("insert reservation items: %w", err)
		}
	}
	if err := outbox.Add(ctx, tx, events...); err != nil {
		return nil, err
	}
	if err := commit(ctx, tx); err != nil {
		return nil, err
	}
	return outcomes, nil
}

// Release asks for an order's reservation to be given back, as announced by one event.
type Release struct {
	EventID string
	OrderID string
	Reason  string
}

// Released is a reservation given back.
type Released struct {
	Release       Release
	ReservationID string
	Items         []inventory.Item
}

// Release gives back the RESERVED reservations of a batch of orders in one transaction, with
// the inbox claims and the events announce returns. An order without a reservation, or whose
// reservation was released already, is left alone. The releases made are returned once committed.
func (r *Repository) Release(ctx context.Context, queue string, releases []Release, announce func(Released) outbox.Event) ([]Released, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)

	eventIDs := make([]string, len(releases))
	for i, rel := range releases {
		eventIDs[i] = rel.EventID
	}
	fresh, err := claim(ctx, tx, queue, eventIDs)
	if err != nil {
		return nil, err
	}
	byOrder := map[string]Release{}
	var orderIDs []string
	for _, rel := range releases {
		if _, seen := byOrder[rel.OrderID]; fresh[rel.EventID] && !seen {
			byOrder[rel.OrderID] = rel
			orderIDs = append(orderIDs, rel.OrderID)
		}
	}
	if len(orderIDs) == 0 {
		return nil, commit(ctx, tx)
	}

	// Locking the reservations first means a concurrent release of the same order waits here
	// and then finds it RELEASED.
	rows, err := tx.Query(ctx, `
		SELECT r.id::text, r.order_id::text, i.product_id::text, i.quantity
		FROM reservations r JOIN reservation_items i ON i.reservation_id = r.id
		WHERE r.order_id = ANY($1::uuid[]) AND r.status = $2
		ORDER BY r.id, i.product_id
		FOR UPDATE OF r`, orderIDs, StatusReserved)
	if err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}
	var released []Released
	index := map[string]int{}
	var items []inventory.Item
	var resID, orderID, productID string
	var quantity int64
	_, err = pgx.ForEachRow(rows, []any{&resID, &orderID, &productID, &quantity}, func() error {
		i, ok := index[resID]
		if !ok {
			i = len(released)
			index[resID] = i
			released = append(released, Released{Release: byOrder[orderID], ReservationID: resID})
		}
		it := inventory.Item{ProductID: productID, Quantity: quantity}
		released[i].Items = append(released[i].Items, it)
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock reservations: %w", err)
	}

	var events []outbox.Event
	if len(released) > 0 {
		products, err := lockProducts(ctx, tx, inventory.ProductIDs(items))
		if err != nil {
			return nil, err
		}
		changed := map[string]bool{}
		ids := make([]string, len(released))
		for i, rel := range released {
			if err := inventory.Release(products, rel.Items); err != nil {
				return nil, fmt.Errorf("release reservation %s: %w", rel.ReservationID, err)
			}
			for _, it := range rel.Items {
				changed[it.ProductID] = true
			}
			ids[i] = rel.ReservationID
			events = append(events, announce(rel))
		}
		if err := updateReserved(ctx, tx, products, changed); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `
			UPDATE reservations SET status = $2, updated_at = now() WHERE id = ANY($1::uuid[])`,
			ids, StatusReleased); err != nil {
			return nil, fmt.Errorf("update reservations: %w", err)
		}
	}
	if err := outbox.Add(ctx, tx, events...); err != nil {
		return nil, err
	}
	if err := commit(ctx, tx); err != nil {
		return nil, err
	}
	return released, nil
}

// lockProducts locks the products with the given ids in id order and returns those that exist.
func lockProducts(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*inventory.Product, error) {
	rows, err := tx.Query(ctx, `
		SELECT id::text, name, quantity_total, quantity_reserved FROM products
		WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, ids)
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

// reservedOrders returns which of the orders have a reservation, whatever its status.
func reservedOrders(ctx context.Context, tx pgx.Tx, orderIDs []string) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `SELECT order_id::text FROM reservations WHERE order_id = ANY($1::uuid[])`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("select reservations: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("select reservations: %w", err)
	}
	reserved := make(map[string]bool, len(ids))
	for _, id := range ids {
		reserved[id] = true
	}
	return reserved, nil
}

// updateReserved writes the reserved quantity of the changed products in one statement.
func updateReserved(ctx context.Context, tx pgx.Tx, products map[string]*inventory.Product, changed map[string]bool) error {
	if len(changed) == 0 {
		return nil
	}
	ids := make([]string, 0, len(changed))
	reserved := make([]int64, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
		reserved = append(reserved, products[id].Reserved())
	}
	if _, err := tx.Exec(ctx, `
		UPDATE products p SET quantity_reserved = u.reserved, updated_at = now()
		FROM unnest($1::uuid[], $2::bigint[]) AS u(id, reserved)
		WHERE p.id = u.id`, ids, reserved); err != nil {
		return fmt.Errorf("update products: %w", err)
	}
	return nil
}

func scanProduct(row pgx.Row) (*inventory.Product, error) {
	var id, name string
	var total, reserved int64
	if err := row.Scan(&id, &name, &total, &reserved); err != nil {
		return nil, err
	}
	return inventory.Load(id, name, total, reserved), nil
}

// claim claims event ids in the inbox in sorted order, so that batches sharing redelivered
// events wait for each other instead of deadlocking.
func claim(ctx context.Context, tx pgx.Tx, queue string, eventIDs []string) (map[string]bool, error) {
	slices.Sort(eventIDs)
	return inbox.Claim(ctx, tx, queue, eventIDs)
}

func commit(ctx context.Context, tx pgx.Tx) error {
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
