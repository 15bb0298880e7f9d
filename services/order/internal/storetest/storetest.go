// Package storetest is the contract of order-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// Begin starts a unit of work on the store under test: the store as the rules see it, and its
// end, which commits what was written through the store when commit is true and drops it
// otherwise. orderIDs are the orders the unit of work touches, for an implementation that reads
// them ahead as the runner's Prepare does; others ignore them. The end reports its own failures
// through t.
type Begin func(t *testing.T, orderIDs ...string) (store eventhandler.Store, end func(commit bool))

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
	c := &contract{Impl: impl}
	t.Run("an order that does not exist reads nil", c.orderThatDoesNotExist)
	t.Run("a placed order reads PENDING at version 1", c.placed)
	t.Run("a unit of work reads back the change it recorded", c.readsOwnRecord)
	t.Run("a recorded change is visible to the next unit of work once committed", c.recordCommitted)
	t.Run("a recorded change is gone after a rollback", c.recordRolledBack)
	t.Run("a failure reason is kept", c.failureReason)
	t.Run("a tracking code is kept", c.trackingCode)
	t.Run("two changes of one order in one unit of work are both kept", c.twoChanges)
	t.Run("the orders of one unit of work are kept apart", c.severalOrders)
}

type contract struct{ Impl }

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
	s, end := c.Begin(t, orderIDs...)
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

// order returns an order as u sees it, failing t on an error.
func (u *unit) order(id string) *order.Order {
	u.t.Helper()
	o, err := u.Order(context.Background(), id)
	if err != nil {
		u.t.Fatalf("Order(%s): %v", id, err)
	}
	return o
}

// apply moves an order by an event as the rule does, failing t unless it changes the order,
// and returns the order as it is after it.
func (u *unit) apply(id string, kind order.EventKind, reason, tracking string) *order.Order {
	u.t.Helper()
	o := u.order(id)
	if o == nil {
		u.t.Fatalf("order %s does not exist", id)
	}
	e := order.Event{ID: uuid.NewString(), OrderID: id, Kind: kind, Reason: reason, TrackingCode: tracking}
	change, changed, err := o.Apply(e, time.Now())
	if err != nil || !changed {
		u.t.Fatalf("%s on a %s order: changed %v, %v", kind, o.Status(), changed, err)
	}
	u.Record(o, order.Change{Event: e, StatusChange: change, Update: o.Update(change)})
	return o
}

// read returns an order as a unit of work of its own sees it.
func (c *contract) read(t *testing.T, id string) *order.Order {
	t.Helper()
	u := c.unit(t, id)
	o := u.order(id)
	u.commit()
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
	if got == nil {
		t.Fatalf("%s: no order, want %+v", what, stateOf(want))
	}
	if stateOf(got) != stateOf(want) {
		t.Errorf("%s: %+v, want %+v", what, stateOf(got), stateOf(want))
	}
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

func (c *contract) orderThatDoesNotExist(t *testing.T) {
	id := uuid.NewString()
	u := c.unit(t, id)
	if o := u.order(id); o != nil {
		t.Errorf("Order of an id without an order = %+v, want nil", stateOf(o))
	}
	if o := u.order(id); o != nil {
		t.Errorf("Order asked again = %+v, want nil", stateOf(o))
	}
	u.commit()
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
	u := c.unit(t, id)
	moved := u.apply(id, order.PaymentApproved, "", "")
	got := u.order(id)
	check(t, "read after Record", got, moved)
	if got.Status() != order.StatusPaymentApproved || got.Version() != 2 {
		t.Errorf("read after Record: %+v, want PAYMENT_APPROVED at version 2", stateOf(got))
	}
	u.commit()
}

func (c *contract) recordCommitted(t *testing.T) {
	id := c.Place(t)
	placed := c.read(t, id)
	u := c.unit(t, id)
	moved := u.apply(id, order.PaymentApproved, "", "")
	u.commit()
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
	u := c.unit(t, id)
	u.apply(id, order.PaymentFailed, "card declined", "")
	u.rollback()
	check(t, "after a rollback", c.read(t, id), placed)
	c.checkHistory(t, id, order.StatusPending)
	// The order moves as if the rolled-back change never happened.
	u = c.unit(t, id)
	moved := u.apply(id, order.PaymentApproved, "", "")
	u.commit()
	check(t, "the change made after the rollback", c.read(t, id), moved)
	c.checkHistory(t, id, order.StatusPending, order.StatusPaymentApproved)
}

func (c *contract) failureReason(t *testing.T) {
	id := c.Place(t)
	u := c.unit(t, id)
	moved := u.apply(id, order.PaymentFailed, "card declined", "")
	u.commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	if got.Status() != order.StatusPaymentFailed || got.FailureReason() != "card declined" {
		t.Errorf("next unit of work: %+v, want PAYMENT_FAILED for %q", stateOf(got), "card declined")
	}
	c.checkHistory(t, id, order.StatusPending, order.StatusPaymentFailed)
}

func (c *contract) trackingCode(t *testing.T) {
	id := c.Place(t)
	u := c.unit(t, id)
	moved := u.apply(id, order.ShippingScheduled, "", "TRK-ABCD1234")
	u.commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	if got.Status() != order.StatusConfirmed || got.TrackingCode() != "TRK-ABCD1234" {
		t.Errorf("next unit of work: %+v, want CONFIRMED with its tracking code", stateOf(got))
	}
	c.checkHistory(t, id, order.StatusPending, order.StatusConfirmed)
}

func (c *contract) twoChanges(t *testing.T) {
	id := c.Place(t)
	u := c.unit(t, id)
	u.apply(id, order.InventoryFailed, "insufficient stock", "")
	// The second event of the order reads what the first left.
	if o := u.order(id); o.Status() != order.StatusInventoryFailed || o.Version() != 2 {
		t.Fatalf("after the first change: %+v", stateOf(o))
	}
	moved := u.apply(id, order.PaymentReversed, "inventory failed", "")
	u.commit()
	got := c.read(t, id)
	check(t, "next unit of work", got, moved)
	if got.Status() != order.StatusCancelled || got.Version() != 3 || got.FailureReason() != "insufficient stock" {
		t.Errorf("next unit of work: %+v, want CANCELLED at version 3 for the inventory failure", stateOf(got))
	}
	c.checkHistory(t, id, order.StatusPending, order.StatusInventoryFailed, order.StatusCancelled)
}

func (c *contract) severalOrders(t *testing.T) {
	a, b, none := c.Place(t), c.Place(t), uuid.NewString()
	u := c.unit(t, a, b, none)
	movedA := u.apply(a, order.PaymentApproved, "", "")
	movedB := u.apply(b, order.PaymentFailed, "amount over limit", "")
	if o := u.order(none); o != nil {
		t.Errorf("an id without an order: %+v", stateOf(o))
	}
	u.commit()
	check(t, "order a", c.read(t, a), movedA)
	check(t, "order b", c.read(t, b), movedB)
	c.checkHistory(t, a, order.StatusPending, order.StatusPaymentApproved)
	c.checkHistory(t, b, order.StatusPending, order.StatusPaymentFailed)
}
