// Package storetest is the contract of payment-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Begin starts a unit of work on the store under test: the store as the rules see it, and its
// end, which commits what was written through the store when commit is true and drops it
// otherwise. orderIDs are the orders the unit of work touches, for an implementation that reads
// them ahead as the runner's Prepare does; others ignore them. The end reports its own failures
// through t.
type Begin func(t *testing.T, orderIDs ...string) (store eventhandler.Store, end func(commit bool))

// Run checks the contract of payment-service's Store against the implementation begin starts.
// Units of work run one after another, never two at once; each subtest uses orders of its own.
func Run(t *testing.T, begin Begin) {
	c := &contract{begin: begin}
	t.Run("an order without a payment reads nil", c.orderWithoutPayment)
	t.Run("a unit of work reads back the payment it added", c.readsOwnAdd)
	t.Run("an added payment is visible to the next unit of work once committed", c.addCommitted)
	t.Run("an added payment is gone after a rollback", c.addRolledBack)
	t.Run("a unit of work reads back the payment it saved", c.readsOwnSave)
	t.Run("a saved payment is visible to the next unit of work once committed", c.saveCommitted)
	t.Run("a saved payment is as it was after a rollback", c.saveRolledBack)
	t.Run("a payment added then saved in one unit of work is stored as it ended", c.addThenSave)
	t.Run("a declined payment keeps its reason", c.declined)
	t.Run("a cancelled order's tombstone round-trips", c.tombstone)
	t.Run("the payments of several orders in one unit of work are kept apart", c.severalOrders)
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

// payment returns the payment of an order as u sees it, failing t on an error.
func (u *unit) payment(orderID string) *payment.Payment {
	u.t.Helper()
	p, err := u.Payment(context.Background(), orderID)
	if err != nil {
		u.t.Fatalf("Payment(%s): %v", orderID, err)
	}
	return p
}

// read returns the payment of an order as a unit of work of its own sees it.
func (c *contract) read(t *testing.T, orderID string) *payment.Payment {
	t.Helper()
	u := c.unit(t, orderID)
	p := u.payment(orderID)
	u.commit()
	return p
}

// store commits p, added by a unit of work of its own.
func (c *contract) store(t *testing.T, p *payment.Payment) {
	t.Helper()
	u := c.unit(t, p.OrderID())
	u.Add(p)
	u.commit()
}

// charge returns a new payment of an order: approved unless method is payment.MethodDeclinedCard.
func charge(t *testing.T, orderID, method string, amountMinor int64) *payment.Payment {
	t.Helper()
	g, err := payment.NewGateway(1_000_000, 0, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	p, err := payment.Charge(g, uuid.NewString(), orderID, method, amountMinor)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// check fails t unless got is a payment equal to want.
func check(t *testing.T, what string, got, want *payment.Payment) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no payment, want %s", what, describe(want))
	}
	if describe(got) != describe(want) {
		t.Errorf("%s: %s, want %s", what, describe(got), describe(want))
	}
}

func describe(p *payment.Payment) string {
	return fmt.Sprintf("payment %s of order %s: %q %s, amount %d, reason %q",
		p.ID(), p.OrderID(), p.Method(), p.Status(), p.AmountMinor(), p.Reason())
}

func (c *contract) orderWithoutPayment(t *testing.T) {
	orderID := uuid.NewString()
	u := c.unit(t, orderID)
	if p := u.payment(orderID); p != nil {
		t.Errorf("Payment of an order without one = %s, want nil", describe(p))
	}
	// Asking again, as a second event of the order would, still finds none.
	if p := u.payment(orderID); p != nil {
		t.Errorf("Payment asked again = %s, want nil", describe(p))
	}
	u.commit()
}

func (c *contract) readsOwnAdd(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 4990)
	u := c.unit(t, p.OrderID())
	if got := u.payment(p.OrderID()); got != nil {
		t.Fatalf("before Add: %s", describe(got))
	}
	u.Add(p)
	check(t, "read after Add", u.payment(p.OrderID()), p)
	u.commit()
}

func (c *contract) addCommitted(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodDebitCard, 12345)
	c.store(t, p)
	check(t, "next unit of work", c.read(t, p.OrderID()), p)
}

func (c *contract) addRolledBack(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 500)
	u := c.unit(t, p.OrderID())
	u.Add(p)
	u.rollback()
	if got := c.read(t, p.OrderID()); got != nil {
		t.Fatalf("after a rollback: %s, want nil", describe(got))
	}
	// The order is free for the payment a redelivery makes.
	again := charge(t, p.OrderID(), payment.MethodDebitCard, 500)
	c.store(t, again)
	check(t, "the payment added after the rollback", c.read(t, p.OrderID()), again)
}

func (c *contract) readsOwnSave(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 700)
	c.store(t, p)
	u := c.unit(t, p.OrderID())
	got := u.payment(p.OrderID())
	check(t, "before the reversal", got, p)
	if reversed, err := got.Reverse("inventory failed"); err != nil || !reversed {
		t.Fatalf("Reverse = %v, %v", reversed, err)
	}
	u.Save(got)
	want := payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), payment.StatusReversed, "inventory failed")
	check(t, "read after Save", u.payment(p.OrderID()), want)
	u.commit()
}

func (c *contract) saveCommitted(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 800)
	c.store(t, p)
	u := c.unit(t, p.OrderID())
	got := u.payment(p.OrderID())
	if _, err := got.Reverse("order cancelled: deadline"); err != nil {
		t.Fatal(err)
	}
	u.Save(got)
	u.commit()
	want := payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), payment.StatusReversed, "order cancelled: deadline")
	check(t, "next unit of work", c.read(t, p.OrderID()), want)
	// Reversed already: a repeated compensation changes nothing, and saving it keeps it so.
	u = c.unit(t, p.OrderID())
	got = u.payment(p.OrderID())
	if reversed, err := got.Reverse("again"); err != nil || reversed {
		t.Fatalf("Reverse of a reversed payment = %v, %v", reversed, err)
	}
	u.commit()
	check(t, "after a repeated reversal", c.read(t, p.OrderID()), want)
}

func (c *contract) saveRolledBack(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 900)
	c.store(t, p)
	u := c.unit(t, p.OrderID())
	got := u.payment(p.OrderID())
	if _, err := got.Reverse("rolled back"); err != nil {
		t.Fatal(err)
	}
	u.Save(got)
	u.rollback()
	check(t, "after a rollback", c.read(t, p.OrderID()), p)
}

func (c *contract) addThenSave(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 1000)
	u := c.unit(t, p.OrderID())
	u.Add(p)
	// A second event of the order in the same unit of work: it reads the payment the first
	// added, reverses it and saves it.
	got := u.payment(p.OrderID())
	if _, err := got.Reverse("inventory released"); err != nil {
		t.Fatal(err)
	}
	u.Save(got)
	u.commit()
	want := payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), payment.StatusReversed, "inventory released")
	check(t, "next unit of work", c.read(t, p.OrderID()), want)
}

func (c *contract) declined(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodDeclinedCard, 2500)
	if p.Status() != payment.StatusDeclined || p.Reason() == "" {
		t.Fatalf("charge with a declined card: %s", describe(p))
	}
	c.store(t, p)
	check(t, "next unit of work", c.read(t, p.OrderID()), p)
}

func (c *contract) tombstone(t *testing.T) {
	p, err := payment.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed")
	if err != nil {
		t.Fatal(err)
	}
	c.store(t, p)
	check(t, "next unit of work", c.read(t, p.OrderID()), p)
}

func (c *contract) severalOrders(t *testing.T) {
	a := charge(t, uuid.NewString(), payment.MethodCreditCard, 100)
	b := charge(t, uuid.NewString(), payment.MethodDeclinedCard, 200)
	none := uuid.NewString()
	u := c.unit(t, a.OrderID(), b.OrderID(), none)
	u.Add(a)
	u.Add(b)
	if got := u.payment(none); got != nil {
		t.Errorf("an order without a payment: %s", describe(got))
	}
	u.commit()
	check(t, "order a", c.read(t, a.OrderID()), a)
	check(t, "order b", c.read(t, b.OrderID()), b)
	if got := c.read(t, none); got != nil {
		t.Errorf("an order without a payment: %s", describe(got))
	}
}
