// Package postgres stores shipments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
	"context"
	"embed"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are every migration shipping-service's database needs, in order.
var Migrations = unitofwork.Migrations(migrations)

// Store reads and writes shipments within the transaction of a unit of work: it reads the
// shipments of a batch's orders ahead, and writes what the rules added and changed with the
// commit, a statement per kind of write.
type Store struct {
	tx        database.Querier
	shipments unitofwork.Rows[*shipping.Shipment]
}

// NewStore returns the store of tx, for the rules and the runner.
func NewStore(tx database.Querier) *Store { return &Store{tx: tx} }

const selectShipments = `
	SELECT id::text, order_id::text, status, COALESCE(tracking_code, ''), freight_minor, country_code,
		estimated_delivery, COALESCE(reason, ''), created_at
	FROM shipments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`

// Prepare reads and locks the shipments of the batch's orders (unitofwork.Tx).
func (s *Store) Prepare(b *pgx.Batch, batch unitofwork.Batch) {
	s.shipments.Prepare(b, selectShipments, batch.OrderIDs, s.scan)
}

func (s *Store) scan(rows pgx.Rows) error {
	var snap shipping.Snapshot
	var status string
	var delivery *time.Time // none for a shipment never scheduled
	_, err := pgx.ForEachRow(rows, []any{&snap.ID, &snap.OrderID, &status, &snap.TrackingCode, &snap.FreightMinor, &snap.CountryCode,
		&delivery, &snap.Reason, &snap.CreatedAt}, func() error {
		snap.Status = shipping.Status(status)
		snap.EstimatedDelivery = time.Time{}
		if delivery != nil {
			snap.EstimatedDelivery = *delivery
		}
		s.shipments.Found(snap.OrderID, shipping.Load(snap))
		return nil
	})
	return err
}

// Shipment returns the shipment of an order, nil when it has none.
func (s *Store) Shipment(ctx context.Context, orderID string) (*shipping.Shipment, error) {
	return s.shipments.Read(ctx, s.tx, selectShipments, orderID, s.scan)
}

// Add stores a new shipment at the commit.
func (s *Store) Add(sh *shipping.Shipment) { s.shipments.Add(sh.OrderID(), sh) }

// Save writes a changed shipment at the commit.
func (s *Store) Save(sh *shipping.Shipment) { s.shipments.Save(sh.OrderID(), sh) }

// Flush queues the inserts and updates (unitofwork.Tx). The order locks the runner holds keep
// an insert's order id free from this release's replicas. A replica of the previous release
// takes no such lock: when it inserts first, the unique key fails this unit of work, which is
// tried again and reads its row.
func (s *Store) Flush(b *pgx.Batch) error {
	if added := s.shipments.Added(); len(added) > 0 {
		var (
			ids, orders, statuses, countries []string
			codes, reasons                   []*string
			freights                         []int64
			deliveries                       []*time.Time
			created                          []time.Time
		)
		for _, sh := range added {
			ids, orders = append(ids, sh.ID()), append(orders, sh.OrderID())
			statuses, countries = append(statuses, string(sh.Status())), append(countries, sh.CountryCode())
			codes, reasons = append(codes, nullIfEmpty(sh.TrackingCode())), append(reasons, nullIfEmpty(sh.Reason()))
			freights, created = append(freights, sh.FreightMinor()), append(created, sh.CreatedAt())
			var delivery *time.Time
			if !sh.EstimatedDelivery().IsZero() {
				d := sh.EstimatedDelivery()
				delivery = &d
			}
			deliveries = append(deliveries, delivery)
		}
		b.Queue(`
			INSERT INTO shipments (id, order_id, status, tracking_code, freight_minor, country_code,
				estimated_delivery, reason, created_at)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
				$7::timestamptz[], $8::text[], $9::timestamptz[])`,
			ids, orders, statuses, codes, freights, countries, deliveries, reasons, created)
	}
	if saved := s.shipments.Saved(); len(saved) > 0 {
		var ids, statuses []string
		var reasons []*string
		for _, sh := range saved {
			ids, statuses, reasons = append(ids, sh.ID()), append(statuses, string(sh.Status())), append(reasons, nullIfEmpty(sh.Reason()))
		}
		b.Queue(`
			UPDATE shipments AS s SET status = u.status, reason = u.reason
			FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) AS u(id, status, reason)
			WHERE s.id = u.id`, ids, statuses, reasons)
	}
	return nil
}

// Committed does nothing: no one watches shipments (unitofwork.Tx).
func (s *Store) Committed() {}

// nullIfEmpty stores an absent value as NULL rather than a blank one.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
