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
	c := &contract{rulestest.Lifecycle[*payment.Payment, string]{
		Records: rulestest.RecordsOf(begin, "Payment", (*payment.Payment).OrderID),
		Noun:    "payment",
		New: func(t *testing.T, orderID string) *payment.Payment {
			return charge(t, orderID, payment.MethodCreditCard, 4990)
		},
		Change: func(t *testing.T, p *payment.Payment) {
			if done, err := p.Reverse(reversal); err != nil || !done {
				t.Fatalf("Reverse = %v, %v", done, err)
			}
		},
		Changed: func(p *payment.Payment) *payment.Payment { return reversed(p, reversal) },
		View:    describe,
	}}
	c.Run(t)
	t.Run("a reversed payment stays so when reversed again", c.reversedAgain)
	t.Run("a declined payment keeps its reason", c.declined)
	t.Run("a cancelled order's tombstone round-trips", c.tombstone)
}

// contract reaches the store under test through units of work and the payment reads, as the
// other services' contracts reach theirs.
type contract struct {
	rulestest.Lifecycle[*payment.Payment, string]
}

// reversal is the reason of the reversals the contract makes, as a compensation makes them.
const reversal = "inventory failed: out of stock"

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

func describe(p *payment.Payment) string {
	return fmt.Sprintf("payment %s of order %s: %q %s, amount %d, reason %q",
		p.ID(), p.OrderID(), p.Method(), p.Status(), p.AmountMinor(), p.Reason())
}

// reversedAgain checks that a repeated compensation changes nothing, and that saving it keeps
// the payment as the first reversal left it.
func (c *contract) reversedAgain(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodCreditCard, 800)
	want := reversed(p, "order cancelled: deadline")
	c.Store(t, want)
	u := c.Unit(t, p.OrderID())
	again := c.In(u, p.OrderID())
	if done, err := again.Reverse("again"); err != nil || done {
		t.Fatalf("Reverse of a reversed payment = %v, %v", done, err)
	}
	u.Store.Save(again)
	u.Commit()
	c.Check(t, "after a repeated reversal", c.Read(t, p.OrderID()), want)
}

func (c *contract) declined(t *testing.T) {
	p := charge(t, uuid.NewString(), payment.MethodDeclinedCard, 2500)
	if p.Status() != payment.StatusDeclined || p.Reason() == "" {
		t.Fatalf("charge with a declined card: %s", describe(p))
	}
	c.RoundTrip(t, p)
}

func (c *contract) tombstone(t *testing.T) {
	p, err := payment.Tombstone(uuid.NewString(), uuid.NewString(), "order cancelled: saga deadline passed")
	if err != nil {
		t.Fatal(err)
	}
	c.RoundTrip(t, p)
}
