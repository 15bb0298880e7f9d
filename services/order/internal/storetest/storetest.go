// Package storetest is the contract of order-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/rules/rulestest"

	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Begin starts a unit of work on the store under test (rulestest.Begin).
type Begin = rulestest.Begin[eventhandler.Store]

// Impl is an implementation of the Store under test, and what the contract needs around it.
type Impl struct {
	Begin Begin
	// Place stores a new PENDING order, as CreateOrder does, and returns its id. It is never
	// called while a unit of work is under way.
	Place func(t *testing.T) string
	// History returns the statuses of an order's history, oldest first, as GetOrder shows
	// them; nil when the implementation does not show it.
	History func(t *testing.T, id string) []order.Status
}

// Run checks the contract of order-service's Store against impl. Units of work run one after
// another, never two at once; each subtest uses orders of its own.
func Run(t *testing.T, impl Impl) {
	c := &contract{Impl: impl, Records: rulestest.Records[eventhandler.Store, *order.Order]{
		Begin: impl.Begin, Name: "Order", Get: eventhandler.Store.Order,
	}}
	t.Run("an order that does not exist reads nil", c.ReadsNone)
	t.Run("a placed order reads PENDING at version 1", c.placed)
	t.Run("a unit of work reads back the change it recorded", c.readsOwnRecord)
	t.Run("a recorded change is visible to the next unit of work once committed", c.recordCommitted)
	t.Run("a recorded change is gone after a rollback", c.recordRolledBack)
	t.Run("a failure reason is kept", c.failureReason)
	t.Run("a tracking code is kept", c.trackingCode)
	t.Run("two changes of one order in one unit of work are both kept", c.twoChanges)
	t.Run("the orders of one unit of work are kept apart", c.severalOrders)
}

// contract is impl, reached through units of work and Order reads as the other services'
// contracts reach their stores.
type contract struct {
	Impl
	rulestest.Records[eventhandler.Store, *order.Order]
}

// unit is one unit of work under test.
type unit = rulestest.Unit[eventhandler.Store]

// apply moves an order by an event as the rule does, failing t unless it changes the order,
// and returns the order as it is after it.
func (c *contract) apply(u *unit, id string, kind order.EventKind, reason, tracking string) *order.Order {
	u.T.Helper()
	o := c.In(u, id)
	if o == nil {
		u.T.Fatalf("order %s does not exist", id)
	}
	e := order.Event{ID: uuid.NewString(), OrderID: id, Kind: kind, Reason: reason, TrackingCode: tracking}
	change, changed, err := o.Apply(e, time.Now())
	if err != nil || !changed {
		u.T.Fatalf("%s on a %s order: changed %v, %v", kind, o.Status(), changed, err)
	}
	u.Store.Record(o, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
	return o
}

// read returns an order as a unit of work of its own sees it, failing the test unless it exists.
func (c *contract) read(t *testing.T, id string) *order.Order {
	t.Helper()
	o := c.Read(t, id)
	if o == nil {
		t.Fatalf("order %s does not exist", id)
	}
	return o
}

// state is what the rules and the status feed read of an order.
type state struct {
	ID                          string
	Status                      order.Status
	FailureReason, TrackingCode string
	Version                     int
	CreatedAt, UpdatedAt        string
}

func stateOf(o *order.Order) state {
	return state{ID: o.ID(), Status: o.Status(), FailureReason: o.FailureReason(), TrackingCode: o.TrackingCode(),
		Version: o.Version(), CreatedAt: o.CreatedAt().UTC().Format(time.RFC3339Nano), UpdatedAt: o.UpdatedAt().UTC().Format(time.RFC3339Nano)}
}

// check fails t unless got is in the state of want.
func check(t *testing.T, what string, got, want *order.Order) {
	t.Helper()
	rulestest.Check(t, what, stateOf, got, want)
}

// checkHistory fails t unless the history of an order has statuses, where the implementation
// shows it.
func (c *contract) checkHistory(t *testing.T, id string, statuses ...order.Status) {
	t.Helper()
	if c.History == nil {
		return
	}
	if got := c.History(t, id); !slices.Equal(got, statuses) {
		t.Errorf("history of order %s: %v, want %v", id, got, statuses)
	}
}

func (c *contract) placed(t *testing.T) {
	id := c.Place(t)
	o := c.read(t, id)
	if o.ID() != id || o.Status() != order.StatusPending || o.Version() != 1 || o.FailureReason() != "" || o.TrackingCode() != "" ||
		o.CreatedAt().IsZero() || o.UpdatedAt().Before(o.CreatedAt()) {
		t.Errorf("placed order: %+v", stateOf(o))
	}
	c.checkHistory(t, id, order.StatusPending)
}

func (c *contract) readsOwnRecord(t *testing.T) {
	id := c.Place(t)
	u := c.Unit(t, id)
	moved := c.apply(u, id, order.PaymentApproved, "", "")
	got := c.In(u, id)
	check(t, "read after Record", got, moved)
	if got.Status() != order.StatusPaymentApproved || got.Version() != 2 {
		t.Errorf("read after Record: %+v, want PAYMENT_APPROVED at version 2", stateOf(got))
	}
	u.Commit()
}

func (c *contract) recordCommitted(t *testing.T) {
	id := c.Place(t)
	placed := c.read(t, id)
	u := c.Unit(t, id)
	moved := c.apply(u, id, order.PaymentApproved, "", "")
	u.Commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	if !got.CreatedAt().Equal(placed.CreatedAt()) {
		t.Errorf("created at %v, placed at %v", got.CreatedAt(), placed.CreatedAt())
	}
	c.checkHistory(t, id, order.StatusPending, order.StatusPaymentApproved)
}

func (c *contract) recordRolledBack(t *testing.T) {
	id := c.Place(t)
	placed := c.read(t, id)
	u := c.Unit(t, id)
	c.apply(u, id, order.PaymentFailed, "card declined", "")
	u.Rollback()
	check(t, "after a rollback", c.read(t, id), placed)
	c.checkHistory(t, id, order.StatusPending)
	// The order moves as if the rolled-back change never happened.
	u = c.Unit(t, id)
	moved := c.apply(u, id, order.PaymentApproved, "", "")
	u.Commit()
	check(t, "the change made after the rollback", c.read(t, id), moved)
	c.checkHistory(t, id, order.StatusPending, order.StatusPaymentApproved)
}

// recordOne places an order, records the change an event of kind makes to it in a unit of work
// it commits, and checks the next unit of work reads the order as the change left it, which it
// returns.
func (c *contract) recordOne(t *testing.T, kind order.EventKind, reason, tracking string) *order.Order {
	t.Helper()
	id := c.Place(t)
	u := c.Unit(t, id)
	moved := c.apply(u, id, kind, reason, tracking)
	u.Commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	return got
}

func (c *contract) failureReason(t *testing.T) {
	got := c.recordOne(t, order.PaymentFailed, "card declined", "")
	if got.Status() != order.StatusPaymentFailed || got.FailureReason() != "card declined" {
		t.Errorf("next unit of work: %+v, want PAYMENT_FAILED for %q", stateOf(got), "card declined")
	}
	c.checkHistory(t, got.ID(), order.StatusPending, order.StatusPaymentFailed)
}

func (c *contract) trackingCode(t *testing.T) {
	got := c.recordOne(t, order.ShippingScheduled, "", "TRK-ABCD1234")
	if got.Status() != order.StatusConfirmed || got.TrackingCode() != "TRK-ABCD1234" {
		t.Errorf("next unit of work: %+v, want CONFIRMED with its tracking code", stateOf(got))
	}
	c.checkHistory(t, got.ID(), order.StatusPending, order.StatusConfirmed)
}

func (c *contract) twoChanges(t *testing.T) {
	id := c.Place(t)
	u := c.Unit(t, id)
	c.apply(u, id, order.InventoryFailed, "insufficient stock", "")
	// The second event of the order reads what the first left.
	if o := c.In(u, id); o.Status() != order.StatusInventoryFailed || o.Version() != 2 {
		t.Fatalf("after the first change: %+v", stateOf(o))
	}
	moved := c.apply(u, id, order.PaymentReversed, "inventory failed", "")
	u.Commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	if got.Status() != order.StatusCancelled || got.Version() != 3 || got.FailureReason() != "insufficient stock" {
		t.Errorf("next unit of work: %+v, want CANCELLED at version 3 for the inventory failure", stateOf(got))
	}
	c.checkHistory(t, id, order.StatusPending, order.StatusInventoryFailed, order.StatusCancelled)
}

func (c *contract) severalOrders(t *testing.T) {
	a, b, none := c.Place(t), c.Place(t), uuid.NewString()
	u := c.Unit(t, a, b, none)
	movedA := c.apply(u, a, order.PaymentApproved, "", "")
	movedB := c.apply(u, b, order.PaymentFailed, "amount over limit", "")
	if o := c.In(u, none); o != nil {
		t.Errorf("an id without an order: %+v", stateOf(o))
	}
	u.Commit()
	check(t, "order a", c.read(t, a), movedA)
	check(t, "order b", c.read(t, b), movedB)
	c.checkHistory(t, a, order.StatusPending, order.StatusPaymentApproved)
	c.checkHistory(t, b, order.StatusPending, order.StatusPaymentFailed)
}
