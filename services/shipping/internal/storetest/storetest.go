// Package storetest is the contract of shipping-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

// Begin starts a unit of work on the store under test: the store as the rules see it, and its
// end, which commits what was written through the store when commit is true and drops it
// otherwise. orderIDs are the orders the unit of work touches, for an implementation that reads
// them ahead as the runner's Prepare does; others ignore them. The end reports its own failures
// through t.
type Begin func(t *testing.T, orderIDs ...string) (store eventhandler.Store, end func(commit bool))

// Run checks the contract of shipping-service's Store against the implementation begin starts.
// Units of work run one after another, never two at once; each subtest uses orders of its own.
func Run(t *testing.T, begin Begin) {
	c := &contract{begin: begin}
	t.Run("an order without a shipment reads nil", c.orderWithoutShipment)
	t.Run("a unit of work reads back the shipment it added", c.readsOwnAdd)
	t.Run("an added shipment is visible to the next unit of work once committed", c.addCommitted)
	t.Run("an added shipment is gone after a rollback", c.addRolledBack)
	t.Run("a failed shipment keeps its reason", c.failed)
	t.Run("a cancelled order's tombstone round-trips", c.tombstone)
	t.Run("a unit of work reads back the shipment it saved", c.readsOwnSave)
	t.Run("a saved shipment is visible to the next unit of work once committed", c.saveCommitted)
	t.Run("a saved shipment is as it was after a rollback", c.saveRolledBack)
	t.Run("a shipment added then saved in one unit of work is stored as it ended", c.addThenSave)
	t.Run("the shipments of several orders in one unit of work are kept apart", c.severalOrders)
}

type contract struct{ begin Begin }

// unit is one unit of work under test. One the subtest leaves open is rolled back at its end,
// so that a failed subtest leaves no lock behind for the next.
type unit struct {
	eventhandler.Store
	t     *testing.T
	end   func(bool)
	ended bool
}

func (c *contract) unit(t *testing.T, orderIDs ...string) *unit {
	t.Helper()
	s, end := c.begin(t, orderIDs...)
	u := &unit{Store: s, t: t, end: end}
	t.Cleanup(func() {
		if !u.ended {
			u.rollback()
		}
	})
	return u
}

func (u *unit) commit()   { u.ended = true; u.end(true) }
func (u *unit) rollback() { u.ended = true; u.end(false) }

// shipment returns the shipment of an order as u sees it, failing t on an error.
func (u *unit) shipment(orderID string) *shipping.Shipment {
	u.t.Helper()
	sh, err := u.Shipment(context.Background(), orderID)
	if err != nil {
		u.t.Fatalf("Shipment(%s): %v", orderID, err)
	}
	return sh
}

// read returns the shipment of an order as a unit of work of its own sees it.
func (c *contract) read(t *testing.T, orderID string) *shipping.Shipment {
	t.Helper()
	u := c.unit(t, orderID)
	sh := u.shipment(orderID)
	u.commit()
	return sh
}

// store commits sh, added by a unit of work of its own.
func (c *contract) store(t *testing.T, sh *shipping.Shipment) {
	t.Helper()
	u := c.unit(t, sh.OrderID())
	u.Add(sh)
	u.commit()
}

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

// check fails t unless got is a shipment equal to want.
func check(t *testing.T, what string, got, want *shipping.Shipment) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no shipment, want %+v", what, snap(want))
	}
	if snap(got) != snap(want) {
		t.Errorf("%s: %+v, want %+v", what, snap(got), snap(want))
	}
}

// cancelled returns sh cancelled for reason, as Cancel leaves it.
func cancelled(sh *shipping.Shipment, reason string) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: reason, Status: shipping.StatusCancelled, FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}

func (c *contract) orderWithoutShipment(t *testing.T) {
	orderID := uuid.NewString()
	u := c.unit(t, orderID)
	if sh := u.shipment(orderID); sh != nil {
		t.Errorf("Shipment of an order without one = %+v, want nil", snap(sh))
	}
	if sh := u.shipment(orderID); sh != nil {
		t.Errorf("Shipment asked again = %+v, want nil", snap(sh))
	}
	u.commit()
}

func (c *contract) readsOwnAdd(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.unit(t, sh.OrderID())
	if got := u.shipment(sh.OrderID()); got != nil {
		t.Fatalf("before Add: %+v", snap(got))
	}
	u.Add(sh)
	check(t, "read after Add", u.shipment(sh.OrderID()), sh)
	u.commit()
}

func (c *contract) addCommitted(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "PT")
	if !sh.Scheduled() || sh.TrackingCode() == "" || sh.EstimatedDelivery().IsZero() {
		t.Fatalf("not scheduled: %+v", snap(sh))
	}
	c.store(t, sh)
	check(t, "next unit of work", c.read(t, sh.OrderID()), sh)
}

func (c *contract) addRolledBack(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.unit(t, sh.OrderID())
	u.Add(sh)
	u.rollback()
	if got := c.read(t, sh.OrderID()); got != nil {
		t.Fatalf("after a rollback: %+v, want nil", snap(got))
	}
	// The order is free for the shipment a redelivery makes.
	again := schedule(t, sh.OrderID(), "BR")
	c.store(t, again)
	check(t, "the shipment added after the rollback", c.read(t, sh.OrderID()), again)
}

func (c *contract) failed(t *testing.T) {
	sh := schedule(t, uuid.NewString(), shipping.RefusedCountry)
	if sh.Status() != shipping.StatusFailed || sh.Reason() == "" {
		t.Fatalf("shipment to %s: %+v", shipping.RefusedCountry, snap(sh))
	}
	c.store(t, sh)
	check(t, "next unit of work", c.read(t, sh.OrderID()), sh)
}

func (c *contract) tombstone(t *testing.T) {
	sh, err := shipping.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed", now)
	if err != nil {
		t.Fatal(err)
	}
	c.store(t, sh)
	check(t, "next unit of work", c.read(t, sh.OrderID()), sh)
}

func (c *contract) readsOwnSave(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	c.store(t, sh)
	u := c.unit(t, sh.OrderID())
	got := u.shipment(sh.OrderID())
	check(t, "before the cancellation", got, sh)
	if !got.Cancel("order cancelled: deadline") {
		t.Fatal("a scheduled shipment was not cancelled")
	}
	u.Save(got)
	check(t, "read after Save", u.shipment(sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
	u.commit()
}

func (c *contract) saveCommitted(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "PT")
	c.store(t, sh)
	u := c.unit(t, sh.OrderID())
	got := u.shipment(sh.OrderID())
	got.Cancel("order cancelled: deadline")
	u.Save(got)
	u.commit()
	check(t, "next unit of work", c.read(t, sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
}

func (c *contract) saveRolledBack(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	c.store(t, sh)
	u := c.unit(t, sh.OrderID())
	got := u.shipment(sh.OrderID())
	got.Cancel("rolled back")
	u.Save(got)
	u.rollback()
	check(t, "after a rollback", c.read(t, sh.OrderID()), sh)
}

func (c *contract) addThenSave(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.unit(t, sh.OrderID())
	u.Add(sh)
	// A second event of the order in the same unit of work (order.cancelled after
	// inventory.reserved): it reads the shipment the first added, cancels it and saves it.
	got := u.shipment(sh.OrderID())
	if !got.Cancel("order cancelled: deadline") {
		t.Fatal("the shipment just added is not scheduled")
	}
	u.Save(got)
	u.commit()
	check(t, "next unit of work", c.read(t, sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
}

func (c *contract) severalOrders(t *testing.T) {
	a, b := schedule(t, uuid.NewString(), "BR"), schedule(t, uuid.NewString(), shipping.RefusedCountry)
	none := uuid.NewString()
	u := c.unit(t, a.OrderID(), b.OrderID(), none)
	u.Add(a)
	u.Add(b)
	if got := u.shipment(none); got != nil {
		t.Errorf("an order without a shipment: %+v", snap(got))
	}
	u.commit()
	check(t, "order a", c.read(t, a.OrderID()), a)
	check(t, "order b", c.read(t, b.OrderID()), b)
	if got := c.read(t, none); got != nil {
		t.Errorf("an order without a shipment: %+v", snap(got))
	}
}
