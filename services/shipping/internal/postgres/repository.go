// Package postgres stores shipments in PostgreSQL. Its Store works inside the transaction of a
// unit of work, which also holds the inbox claim and the outbox events.
package postgres

import (
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
type Store = unitofwork.Records[*shipping.Shipment]

// NewStore returns the store of tx, for the rules and the runner.
func NewStore(tx database.Querier) *Store { return unitofwork.NewRecords(tx, shipments) }

var shipments = &unitofwork.Table[*shipping.Shipment]{
	Select: `
		SELECT id::text, order_id::text, status, COALESCE(tracking_code, ''), freight_minor, country_code,
			estimated_delivery, COALESCE(reason, ''), created_at
		FROM shipments WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY order_id FOR UPDATE`,
	Scan:    scan,
	OrderID: (*shipping.Shipment).OrderID,
	Insert:  insert,
	Update:  update,
}

func scan(row pgx.CollectableRow) (*shipping.Shipment, error) {
	var snap shipping.Snapshot
	var status string
	var delivery *time.Time // none for a shipment never scheduled
	if err := row.Scan(&snap.ID, &snap.OrderID, &status, &snap.TrackingCode, &snap.FreightMinor, &snap.CountryCode,
		&delivery, &snap.Reason, &snap.CreatedAt); err != nil {
		return nil, err
	}
	snap.Status = shipping.Status(status)
	if delivery != nil {
		snap.EstimatedDelivery = *delivery
	}
	return shipping.Load(snap), nil
}

func insert(b *pgx.Batch, added []*shipping.Shipment) {
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

func update(b *pgx.Batch, saved []*shipping.Shipment) {
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

// nullIfEmpty stores an absent value as NULL rather than a blank one.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
