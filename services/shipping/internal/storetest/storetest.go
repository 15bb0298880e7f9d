// Package storetest is the contract of shipping-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/rules/rulestest"

	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Begin starts a unit of work on the store under test (rulestest.Begin).
type Begin = rulestest.Begin[eventhandler.Store]

// Run checks the contract of shipping-service's Store against the implementation begin starts.
// Units of work run one after another, never two at once; each subtest uses orders of its own.
func Run(t *testing.T, begin Begin) {
	c := &contract{rulestest.Lifecycle[*shipping.Shipment, snapshot]{
		Records: rulestest.RecordsOf(begin, "Shipment", (*shipping.Shipment).OrderID),
		Noun:    "shipment",
		New:     scheduled,
		Change: func(t *testing.T, sh *shipping.Shipment) {
			if !sh.Cancel(cancellation) {
				t.Fatalf("the shipment of order %s was not cancelled: %+v", sh.OrderID(), snap(sh))
			}
		},
		Changed: func(sh *shipping.Shipment) *shipping.Shipment { return cancelled(sh, cancellation) },
		View:    snap,
	}}
	c.Run(t)
	t.Run("a failed shipment keeps its reason", c.failed)
	t.Run("a cancelled order's tombstone round-trips", c.tombstone)
}

// contract reaches the store under test through units of work and the shipment reads, as the
// other services' contracts reach theirs.
type contract struct {
	rulestest.Lifecycle[*shipping.Shipment, snapshot]
}

// cancellation is the reason of the cancellations the contract makes, as order.cancelled makes
// them.
const cancellation = "order cancelled: deadline"

// now is the carrier's clock: whole seconds, which every store keeps exactly.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// schedule returns a new shipment of an order to country: failed for shipping.RefusedCountry,
// scheduled otherwise.
func schedule(t *testing.T, orderID, country string) *shipping.Shipment {
	t.Helper()
	c, err := shipping.NewCarrier(1000, 0, shipping.Env{
		Now:     func() time.Time { return now },
		Random:  func() float64 { return 0.5 },
		Entropy: rand.Reader,
	})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := c.Schedule(uuid.NewString(), orderID, country, 3)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// scheduled returns a new shipment of an order, scheduled with its tracking code and estimated
// delivery.
func scheduled(t *testing.T, orderID string) *shipping.Shipment {
	t.Helper()
	sh := schedule(t, orderID, "PT")
	if !sh.Scheduled() || sh.TrackingCode() == "" || sh.EstimatedDelivery().IsZero() {
		t.Fatalf("not scheduled: %+v", snap(sh))
	}
	return sh
}

// snapshot is what the rules and the events they publish read of a shipment.
type snapshot struct {
	ID, OrderID, TrackingCode, CountryCode, Reason string
	Status                                         shipping.Status
	FreightMinor                                   int64
	EstimatedDelivery, CreatedAt                   string
}

// snap returns what the rules read of sh. Its estimated delivery is compared only once it was
// scheduled: the rules and shipping.scheduled read it of scheduled shipments alone.
func snap(sh *shipping.Shipment) snapshot {
	s := snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(), CountryCode: sh.CountryCode(),
		Reason: sh.Reason(), Status: sh.Status(), FreightMinor: sh.FreightMinor(),
		CreatedAt: sh.CreatedAt().UTC().Format(time.RFC3339Nano)}
	if sh.TrackingCode() != "" {
		s.EstimatedDelivery = sh.EstimatedDelivery().UTC().Format(time.RFC3339Nano)
	}
	return s
}

// cancelled returns sh cancelled for reason, as Cancel leaves it.
func cancelled(sh *shipping.Shipment, reason string) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: reason, Status: shipping.StatusCancelled, FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}

func (c *contract) failed(t *testing.T) {
	sh := schedule(t, uuid.NewString(), shipping.RefusedCountry)
	if sh.Status() != shipping.StatusFailed || sh.Reason() == "" {
		t.Fatalf("shipment to %s: %+v", shipping.RefusedCountry, snap(sh))
	}
	c.RoundTrip(t, sh)
}

func (c *contract) tombstone(t *testing.T) {
	sh, err := shipping.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed", now)
	if err != nil {
		t.Fatal(err)
	}
	c.RoundTrip(t, sh)
}
