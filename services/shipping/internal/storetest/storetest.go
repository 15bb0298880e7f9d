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
	c := &contract{rulestest.Records[eventhandler.Store, *shipping.Shipment]{
		Begin: begin, Name: "Shipment", Get: eventhandler.Store.Shipment, Add: eventhandler.Store.Add, OrderID: (*shipping.Shipment).OrderID,
	}}
	t.Run("an order without a shipment reads nil", c.ReadsNone)
	t.Run("a unit of work reads back the shipment it added", c.readsOwnAdd)
	t.Run("an added shipment is visible to the next unit of work once committed", c.addCommitted)
	t.Run("an added shipment is gone after a rollback", c.addRolledBack)
	t.Run("a failed shipment keeps its reason", c.failed)
	t.Run("a cancelled order's tombstone round-trips", c.tombstone)
	t.Run("a unit of work reads back the shipment it saved", c.readsOwnSave)
	t.Run("a saved shipment is visible to the next unit of work once committed", c.saveEnded(true))
	t.Run("a saved shipment is as it was after a rollback", c.saveEnded(false))
	t.Run("a shipment added then saved in one unit of work is stored as it ended", c.addThenSave)
	t.Run("the shipments of several orders in one unit of work are kept apart", c.severalOrders)
}

// contract reaches the store under test through units of work and the shipment reads, as the
// other services' contracts reach theirs.
type contract struct {
	rulestest.Records[eventhandler.Store, *shipping.Shipment]
}

// unit is one unit of work under test.
type unit = rulestest.Unit[eventhandler.Store]

// cancel cancels the shipment of an order as u sees it for reason, as order.cancelled does,
// and saves it; it fails the test unless the shipment was scheduled.
func (c *contract) cancel(u *unit, orderID, reason string) {
	u.T.Helper()
	sh := c.In(u, orderID)
	if !sh.Cancel(reason) {
		u.T.Fatalf("the shipment of order %s was not cancelled: %+v", orderID, snap(sh))
	}
	u.Store.Save(sh)
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
	rulestest.Check(t, what, snap, got, want)
}

// cancelled returns sh cancelled for reason, as Cancel leaves it.
func cancelled(sh *shipping.Shipment, reason string) *shipping.Shipment {
	return shipping.Load(shipping.Snapshot{ID: sh.ID(), OrderID: sh.OrderID(), TrackingCode: sh.TrackingCode(),
		CountryCode: sh.CountryCode(), Reason: reason, Status: shipping.StatusCancelled, FreightMinor: sh.FreightMinor(),
		EstimatedDelivery: sh.EstimatedDelivery(), CreatedAt: sh.CreatedAt()})
}

func (c *contract) readsOwnAdd(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.Unit(t, sh.OrderID())
	if got := c.In(u, sh.OrderID()); got != nil {
		t.Fatalf("before Add: %+v", snap(got))
	}
	u.Store.Add(sh)
	check(t, "read after Add", c.In(u, sh.OrderID()), sh)
	u.Commit()
}

func (c *contract) addCommitted(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "PT")
	if !sh.Scheduled() || sh.TrackingCode() == "" || sh.EstimatedDelivery().IsZero() {
		t.Fatalf("not scheduled: %+v", snap(sh))
	}
	c.Store(t, sh)
	check(t, "next unit of work", c.Read(t, sh.OrderID()), sh)
}

func (c *contract) addRolledBack(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.Unit(t, sh.OrderID())
	u.Store.Add(sh)
	u.Rollback()
	if got := c.Read(t, sh.OrderID()); got != nil {
		t.Fatalf("after a rollback: %+v, want nil", snap(got))
	}
	// The order is free for the shipment a redelivery makes.
	again := schedule(t, sh.OrderID(), "BR")
	c.Store(t, again)
	check(t, "the shipment added after the rollback", c.Read(t, sh.OrderID()), again)
}

func (c *contract) failed(t *testing.T) {
	sh := schedule(t, uuid.NewString(), shipping.RefusedCountry)
	if sh.Status() != shipping.StatusFailed || sh.Reason() == "" {
		t.Fatalf("shipment to %s: %+v", shipping.RefusedCountry, snap(sh))
	}
	c.Store(t, sh)
	check(t, "next unit of work", c.Read(t, sh.OrderID()), sh)
}

func (c *contract) tombstone(t *testing.T) {
	sh, err := shipping.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed", now)
	if err != nil {
		t.Fatal(err)
	}
	c.Store(t, sh)
	check(t, "next unit of work", c.Read(t, sh.OrderID()), sh)
}

func (c *contract) readsOwnSave(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	c.Store(t, sh)
	u := c.Unit(t, sh.OrderID())
	check(t, "before the cancellation", c.In(u, sh.OrderID()), sh)
	c.cancel(u, sh.OrderID(), "order cancelled: deadline")
	check(t, "read after Save", c.In(u, sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
	u.Commit()
}

// saveEnded checks a saved shipment as the next unit of work sees it once the unit of work
// that cancelled it ends: cancelled when it committed, as it was when it rolled back.
func (c *contract) saveEnded(commit bool) func(t *testing.T) {
	return func(t *testing.T) {
		sh := schedule(t, uuid.NewString(), "PT")
		c.Store(t, sh)
		u := c.Unit(t, sh.OrderID())
		c.cancel(u, sh.OrderID(), "order cancelled: deadline")
		if commit {
			u.Commit()
			check(t, "next unit of work", c.Read(t, sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
			return
		}
		u.Rollback()
		check(t, "after a rollback", c.Read(t, sh.OrderID()), sh)
	}
}

func (c *contract) addThenSave(t *testing.T) {
	sh := schedule(t, uuid.NewString(), "BR")
	u := c.Unit(t, sh.OrderID())
	u.Store.Add(sh)
	// A second event of the order in the same unit of work (order.cancelled after
	// inventory.reserved): it reads the shipment the first added, cancels it and saves it.
	c.cancel(u, sh.OrderID(), "order cancelled: deadline")
	u.Commit()
	check(t, "next unit of work", c.Read(t, sh.OrderID()), cancelled(sh, "order cancelled: deadline"))
}

func (c *contract) severalOrders(t *testing.T) {
	a, b := schedule(t, uuid.NewString(), "BR"), schedule(t, uuid.NewString(), shipping.RefusedCountry)
	none := uuid.NewString()
	u := c.Unit(t, a.OrderID(), b.OrderID(), none)
	u.Store.Add(a)
	u.Store.Add(b)
	if got := c.In(u, none); got != nil {
		t.Errorf("an order without a shipment: %+v", snap(got))
	}
	u.Commit()
	check(t, "order a", c.Read(t, a.OrderID()), a)
	check(t, "order b", c.Read(t, b.OrderID()), b)
	if got := c.Read(t, none); got != nil {
		t.Errorf("an order without a shipment: %+v", snap(got))
	}
}
