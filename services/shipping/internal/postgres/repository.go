// Package postgres stores shipments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration shipping-service's database needs, in order.
var Migrations = []database.Migrations{
	{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")},
	inbox.Migrations,
	outbox.Migrations,
}

// Store writes shipments within one transaction.
type Store struct {
	tx database.Querier
}

// Bind returns the store of tx.
func Bind(tx database.Querier) *Store { return &Store{tx: tx} }

// Insert stores new shipments, except for orders that have one already, and returns the ids
// of those it stored.
func (s *Store) Insert(ctx context.Context, shipments []*shipping.Shipment) (map[string]bool, error) {
	if len(shipments) == 0 {
		return nil, nil
	}
	// Inserting in order id order makes concurrent batches wait on each other's unique keys
	// in one direction only, never in a cycle.
	sorted := slices.SortedFunc(slices.Values(shipments), func(a, b *shipping.Shipment) int { return strings.Compare(a.OrderID(), b.OrderID()) })
	var (
		ids, orders, statuses, countries []string
		codes, reasons                   []*string
		freights                         []int64
		deliveries                       []*time.Time
		created                          []time.Time
	)
	for _, sh := range sorted {
		ids, orders = append(ids, sh.ID()), append(orders, sh.OrderID())
		statuses, countries = append(statuses, string(sh.Status())), append(countries, sh.CountryCode())
		codes, reasons = append(codes, nullIfEmpty(sh.TrackingCode())), append(reasons, nullIfEmpty(sh.Reason()))
		freights, created = append(freights, sh.FreightMinor()), append(created, sh.CreatedAt())
		var delivery *time.Time
		if sh.Scheduled() {
			d := sh.EstimatedDelivery()
			delivery = &d
		}
		deliveries = append(deliveries, delivery)
	}
	rows, err := s.tx.Query(ctx, `
		INSERT INTO shipments (id, order_id, status, tracking_code, freight_minor, country_code,
			estimated_delivery, reason, created_at)
		SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
			$7::timestamptz[], $8::text[], $9::timestamptz[])
		ON CONFLICT (order_id) DO NOTHING
		RETURNING id::text`, ids, orders, statuses, codes, freights, countries, deliveries, reasons, created)
	if err != nil {
		return nil, fmt.Errorf("insert shipments: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert shipments: %w", err)
	}
	stored := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		stored[id] = true
	}
	return stored, nil
}

// Lock loads and locks the shipments of orders, keyed by order id; locking in order id order
// means concurrent batches never deadlock.
func (s *Store) Lock(ctx context.Context, orderIDs []string) (map[string]*shipping.Shipment, error) {
	orderIDs = slices.Compact(slices.Sorted(slices.Values(orderIDs)))
	rows, err := s.tx.Query(ctx, `
		SELECT id::text, order_id::text, status, COALESCE(tracking_code, ''), freight_minor, country_code,
			COALESCE(estimated_delivery, 'epoch'), COALESCE(reason, ''), created_at
		FROM shipments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("lock shipments: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*shipping.Shipment, error) {
		var snap shipping.Snapshot
		var status string
		if err := row.Scan(&snap.ID, &snap.OrderID, &status, &snap.TrackingCode, &snap.FreightMinor, &snap.CountryCode,
			&snap.EstimatedDelivery, &snap.Reason, &snap.CreatedAt); err != nil {
			return nil, err
		}
		snap.Status = shipping.Status(status)
		return shipping.Load(snap), nil
	})
	if err != nil {
		return nil, fmt.Errorf("lock shipments: %w", err)
	}
	byOrder := make(map[string]*shipping.Shipment, len(list))
	for _, sh := range list {
		byOrder[sh.OrderID()] = sh
	}
	return byOrder, nil
}

// Save writes the status and reason of changed shipments, in a statement that may wait for the commit.
func (s *Store) Save(ctx context.Context, shipments []*shipping.Shipment) error {
	if len(shipments) == 0 {
		return nil
	}
	var ids, statuses []string
	var reasons []*string
	for _, sh := range shipments {
		ids, statuses, reasons = append(ids, sh.ID()), append(statuses, string(sh.Status())), append(reasons, nullIfEmpty(sh.Reason()))
	}
	b := &pgx.Batch{}
	b.Queue(`
		UPDATE shipments AS s SET status = u.status, reason = u.reason
		FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
		WHERE s.id = u.id`, ids, statuses, reasons)
	if err := database.Write(ctx, s.tx, b); err != nil {
		return fmt.Errorf("update shipments: %w", err)
	}
	return nil
}

// nullIfEmpty stores an absent value as NULL rather than a blank one.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
