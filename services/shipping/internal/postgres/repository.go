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
	tx pgx.Tx
}

// Bind returns the store of tx.
func Bind(tx pgx.Tx) *Store { return &Store{tx: tx} }

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
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
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

// nullIfEmpty stores an absent value as NULL rather than a blank one.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
