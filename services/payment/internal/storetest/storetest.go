// Package storetest is the contract of payment-service's Store (eventhandler.Store): what the
// rules rely on from storage, checked against every implementation, the PostgreSQL store and
// the in-memory one, so that a saga test run in memory proves something about production.
package storetest

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/pkg/rules/rulestest"

	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
)

// Begin starts a unit of work on the store under test (rulestest.Begin).
type Begin = rulestest.Begin[eventhandler.Store]

// Run checks the contract of payment-service's Store against the implementation begin starts.
// Units of work run one after another, never two at once; each subtest uses orders of its own.
func Run(t *testing.T, begin Begin) {
	c := &contract{rulestest.Records[eventhandler.Store, *payment.Payment]{
		Begin: begin, Name: "Payment", Get: eventhandler.Store.Payment, Add: eventhandler.Store.Add, OrderID: (*payment.Payment).OrderID,
	}}
	t.Run("an order without a payment reads nil", c.ReadsNone)
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

// contract reaches the store under test through units of work and the payment reads, as the
// other services' contracts reach theirs.
type contract struct {
	rulestest.Records[eventhandler.Store, *payment.Payment]
}

// unit is one unit of work under test.
type unit = rulestest.Unit[eventhandler.Store]

// reverse reverses the payment of an order as u sees it for reason, as a compensation does,
// and saves it.
func (c *contract) reverse(u *unit, orderID, reason string) {
	u.T.Helper()
	p := c.In(u, orderID)
	if done, err := p.Reverse(reason); err != nil || !done {
		u.T.Fatalf("Reverse = %v, %v", done, err)
	}
	u.Store.Save(p)
}

// reverseStored commits a new credit card payment of amountMinor, reverses it for reason in a
// unit of work it leaves open, and returns the payment as committed and the unit.
func (c *contract) reverseStored(t *testing.T, amountMinor int64, reason string) (*payment.Payment, *unit) {
	t.Helper()
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, amountMinor)
	c.Store(t, p)
	u := c.Unit(t, p.OrderID())
	c.reverse(u, p.OrderID(), reason)
	return p, u
}

// reversed returns p reversed for reason, as Reverse leaves it.
func reversed(p *payment.Payment, reason string) *payment.Payment {
	return payment.Load(p.ID(), p.OrderID(), p.Method(), p.AmountMinor(), payment.StatusReversed, reason)
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
	rulestest.Check(t, what, describe, got, want)
}

func describe(p *payment.Payment) string {
	return fmt.Sprintf("payment %s of order %s: %q %s, amount %d, reason %q",
		p.ID(), p.OrderID(), p.Method(), p.Status(), p.AmountMinor(), p.Reason())
}

func (c *contract) readsOwnAdd(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 4990)
	u := c.Unit(t, p.OrderID())
	if got := c.In(u, p.OrderID()); got != nil {
		t.Fatalf("before Add: %s", describe(got))
	}
	u.Store.Add(p)
	check(t, "read after Add", c.In(u, p.OrderID()), p)
	u.Commit()
}

func (c *contract) addCommitted(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodDebitCard, 12345)
	c.Store(t, p)
	check(t, "next unit of work", c.Read(t, p.OrderID()), p)
}

func (c *contract) addRolledBack(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 500)
	u := c.Unit(t, p.OrderID())
	u.Store.Add(p)
	u.Rollback()
	if got := c.Read(t, p.OrderID()); got != nil {
		t.Fatalf("after a rollback: %s, want nil", describe(got))
	}
	// The order is free for the payment a redelivery makes.
	again := charge(t, p.OrderID(), payment.MethodDebitCard, 500)
	c.Store(t, again)
	check(t, "the payment added after the rollback", c.Read(t, p.OrderID()), again)
}

func (c *contract) readsOwnSave(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 700)
	c.Store(t, p)
	u := c.Unit(t, p.OrderID())
	check(t, "before the reversal", c.In(u, p.OrderID()), p)
	c.reverse(u, p.OrderID(), "inventory failed")
	check(t, "read after Save", c.In(u, p.OrderID()), reversed(p, "inventory failed"))
	u.Commit()
}

func (c *contract) saveCommitted(t *testing.T) {
	p, u := c.reverseStored(t, 800, "order cancelled: deadline")
	u.Commit()
	want := reversed(p, "order cancelled: deadline")
	check(t, "next unit of work", c.Read(t, p.OrderID()), want)
	// Reversed already: a repeated compensation changes nothing, and saving it keeps it so.
	u = c.Unit(t, p.OrderID())
	if done, err := c.In(u, p.OrderID()).Reverse("again"); err != nil || done {
		t.Fatalf("Reverse of a reversed payment = %v, %v", done, err)
	}
	u.Commit()
	check(t, "after a repeated reversal", c.Read(t, p.OrderID()), want)
}

func (c *contract) saveRolledBack(t *testing.T) {
	p, u := c.reverseStored(t, 900, "rolled back")
	u.Rollback()
	check(t, "after a rollback", c.Read(t, p.OrderID()), p)
}

func (c *contract) addThenSave(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 1000)
	u := c.Unit(t, p.OrderID())
	u.Store.Add(p)
	// A second event of the order in the same unit of work: it reads the payment the first
	// added, reverses it and saves it.
	c.reverse(u, p.OrderID(), "inventory released")
	u.Commit()
	check(t, "next unit of work", c.Read(t, p.OrderID()), reversed(p, "inventory released"))
}

func (c *contract) declined(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodDeclinedCard, 2500)
	if p.Status() != payment.StatusDeclined || p.Reason() == "" {
		t.Fatalf("charge with a declined card: %s", describe(p))
	}
	c.Store(t, p)
	check(t, "next unit of work", c.Read(t, p.OrderID()), p)
}

func (c *contract) tombstone(t *testing.T) {
	p, err := payment.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed")
	if err != nil {
		t.Fatal(err)
	}
	c.Store(t, p)
	check(t, "next unit of work", c.Read(t, p.OrderID()), p)
}

func (c *contract) severalOrders(t *testing.T) {
	a := charge(t, uuid.NewString(), payment.MethodCreditCard, 100)
	b := charge(t, uuid.NewString(), payment.MethodDeclinedCard, 200)
	none := uuid.NewString()
	u := c.Unit(t, a.OrderID(), b.OrderID(), none)
	u.Store.Add(a)
	u.Store.Add(b)
	if got := c.In(u, none); got != nil {
		t.Errorf("an order without a payment: %s", describe(got))
	}
	u.Commit()
	check(t, "order a", c.Read(t, a.OrderID()), a)
	check(t, "order b", c.Read(t, b.OrderID()), b)
	if got := c.Read(t, none); got != nil {
		t.Errorf("an order without a payment: %s", describe(got))
	}
}
