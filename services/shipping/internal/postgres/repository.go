// Package postgres stores shipments in PostgreSQL. Each call handles one batch of events in one
// transaction: the inbox claim, the shipments and the outbox events commit together.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the shipping tables.
var Migrations = database.Migrations{Table: "goose_db_version", FS: database.Sub(migrations, "migrations")}

// Repository stores shipments.
type Repository struct {
	pool *pgxpool.Pool
}

// NewRepository returns a repository on pool.
func NewRepository(pool *pgxpool.Pool) *Repository {
	return &Repository{pool: pool}
}

// NewShipment is a shipment decided for an incoming event, with the event announcing it.
type NewShipment struct {
	EventID  string // the incoming event
	Shipment *shipping.Shipment
	Announce outbox.Event
}

// Create stores the shipments of the batch's events seen for the first time and adds their
// announcements to the outbox. An order that already has a shipment keeps it, and nothing is
// announced for it again. It returns what it stored.
func (r *Repository) Create(ctx context.Context, queue string, batch []NewShipment) ([]NewShipment, error) {
	var stored []NewShipment
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		ids := make([]string, len(batch))
		for i, ns := range batch {
			ids[i] = ns.EventID
		}
		fresh, err := inbox.Claim(ctx, tx, queue, ids)
		if err != nil {
			return err
		}
		var news []*shipping.Shipment
		for _, ns := range batch {
			if fresh[ns.EventID] {
				news = append(news, ns.Shipment)
				delete(fresh, ns.EventID) // the same event twice in one batch counts once
			}
		}
		// Inserting in order id order makes concurrent batches wait on each other's unique keys
		// in one direction only, never in a cycle.
		slices.SortFunc(news, func(a, b *shipping.Shipment) int { return strings.Compare(a.OrderID(), b.OrderID()) })
		var (
			shipmentIDs, orders, statuses, countries []string
			codes, reasons                           []*string
			freights                                 []int64
			deliveries                               []*time.Time
			created                                  []time.Time
		)
		for _, s := range news {
			shipmentIDs, orders = append(shipmentIDs, s.ID()), append(orders, s.OrderID())
			statuses, countries = append(statuses, string(s.Status())), append(countries, s.CountryCode())
			codes, reasons = append(codes, nullIfEmpty(s.TrackingCode())), append(reasons, nullIfEmpty(s.Reason()))
			freights, created = append(freights, s.FreightMinor()), append(created, s.CreatedAt())
			var delivery *time.Time
			if s.Scheduled() {
				d := s.EstimatedDelivery()
				delivery = &d
			}
			deliveries = append(deliveries, delivery)
		}
		if len(shipmentIDs) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `
			INSERT INTO shipments (id, order_id, status, tracking_code, freight_minor, country_code,
				estimated_delivery, reason, created_at)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
				$7::timestamptz[], $8::text[], $9::timestamptz[])
			ON CONFLICT (order_id) DO NOTHING
			RETURNING id::text`, shipmentIDs, orders, statuses, codes, freights, countries, deliveries, reasons, created)
		if err != nil {
			return fmt.Errorf("insert shipments: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("insert shipments: %w", err)
		}
		isNew := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			isNew[id] = true
		}
		var events []outbox.Event
		for _, ns := range batch {
			if isNew[ns.Shipment.ID()] {
				stored = append(stored, ns)
				events = append(events, ns.Announce)
			}
		}
		return outbox.Add(ctx, tx, events...)
	})
	if err != nil {
		return nil, err
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
