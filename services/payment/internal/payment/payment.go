// Package payment is the payment domain: the simulated gateway that approves or declines a
// charge, and the payment it leaves behind, which can be reversed when the saga compensates.
package payment

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// Status is where a payment stands.
type Status string

// Payment statuses, as stored in payments.status.
const (
	StatusApproved Status = "APPROVED"
	StatusDeclined Status = "DECLINED"
	StatusReversed Status = "REVERSED"
	// StatusCancelled is the payment of an order cancelled before it was charged: a tombstone
	// that takes the order's one payment, so that an order.created arriving late charges nothing.
	StatusCancelled Status = "CANCELLED"
)

// Payment methods the gateway knows.
const (
	MethodCreditCard   = "credit_card"
	MethodDebitCard    = "debit_card"
	MethodDeclinedCard = "declined_card" // always declined: the documented trigger for a decline
)

// Domain errors.
var (
	ErrInvalidPayment = errors.New("invalid payment")
	ErrInvalidGateway = errors.New("invalid gateway settings")
	ErrNotReversible  = errors.New("payment is not approved")
)

// Decision is the gateway's answer to a charge.
type Decision struct {
	Approved bool
	Reason   string // why it was declined
}

// Decide is the gateway's rule: a pure function of the charge, the limit (in minor units), the
// random decline rate and a random source returning values in [0, 1).
func Decide(method string, amountMinor, limitMinor int64, declineRate float64, random func() float64) Decision {
	switch {
	case method == MethodDeclinedCard:
		return Decision{Reason: "card declined"}
	case method != MethodCreditCard && method != MethodDebitCard:
		return Decision{Reason: fmt.Sprintf("unsupported payment method %q", method)}
	case amountMinor > limitMinor:
		return Decision{Reason: fmt.Sprintf("amount %s exceeds limit %s", money.Format(amountMinor), money.Format(limitMinor))}
	case declineRate > 0 && random() < declineRate:
		return Decision{Reason: "declined by issuer"}
	}
	return Decision{Approved: true}
}

// RememberedKeys is how many idempotency keys the simulated gateway remembers, oldest
// forgotten first. A real gateway keeps them for a day or so; either way the payments table,
// one payment per order, is the lasting guard.
const RememberedKeys = 100_000

// Gateway is the simulated payment gateway with its settings. Like a real one, it takes an
// idempotency key with every charge and answers a repeated key with its first answer instead
// of charging again, so that a redelivered order.created never charges twice.
type Gateway struct {
	limitMinor  int64
	declineRate float64
	random      func() float64

	mu    sync.Mutex
	seen  map[string]charge // idempotency key → the charge made under it
	order []string          // keys, oldest first, to forget beyond RememberedKeys
}

type charge struct {
	method      string
	amountMinor int64
	decision    Decision
}

// NewGateway returns a gateway declining charges above limitMinor and a declineRate share of
// the others at random, drawing from random (values in [0, 1)).
func NewGateway(limitMinor int64, declineRate float64, random func() float64) (*Gateway, error) {
	if limitMinor < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", ErrInvalidGateway, limitMinor)
	}
	if declineRate < 0 || declineRate > 1 {
		return nil, fmt.Errorf("%w: decline rate %v not in [0, 1]", ErrInvalidGateway, declineRate)
	}
	if random == nil {
		return nil, fmt.Errorf("%w: no random source", ErrInvalidGateway)
	}
	return &Gateway{limitMinor: limitMinor, declineRate: declineRate, random: random, seen: map[string]charge{}}, nil
}

// Charge asks the gateway to charge amountMinor under idempotencyKey. The same key with the
// same method and amount gets the first decision again (nothing is charged twice, and a random
// decline does not flip); the same key with another charge is declined, as a real gateway
// refuses a reused key.
func (g *Gateway) Charge(idempotencyKey, method string, amountMinor int64) Decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.seen[idempotencyKey]; ok {
		if c.method != method || c.amountMinor != amountMinor {
			return Decision{Reason: "idempotency key reused for a different charge"}
		}
		return c.decision
	}
	d := Decide(method, amountMinor, g.limitMinor, g.declineRate, g.random)
	g.seen[idempotencyKey] = charge{method: method, amountMinor: amountMinor, decision: d}
	g.order = append(g.order, idempotencyKey)
	if len(g.order) > RememberedKeys {
		delete(g.seen, g.order[0])
		g.order = g.order[1:]
	}
	return d
}

// Payment is the outcome of charging one order. An order has at most one payment.
type Payment struct {
	id          string
	orderID     string
	method      string
	amountMinor int64
	status      Status
	reason      string
}

// Charge asks the gateway to charge amountMinor for an order and returns the resulting payment,
// approved or declined. The order id is the charge's idempotency key at the gateway: charging
// an order again (a redelivered event) never charges it twice.
func Charge(g *Gateway, id, orderID, method string, amountMinor int64) (*Payment, error) {
	switch {
	case id == "":
		return nil, fmt.Errorf("%w: no id", ErrInvalidPayment)
	case orderID == "":
		return nil, fmt.Errorf("%w: no order id", ErrInvalidPayment)
	case amountMinor < 0:
		return nil, fmt.Errorf("%w: negative amount %d", ErrInvalidPayment, amountMinor)
	}
	p := &Payment{id: id, orderID: orderID, method: method, amountMinor: amountMinor, status: StatusApproved}
	if d := g.Charge(orderID, method, amountMinor); !d.Approved {
		p.status, p.reason = StatusDeclined, d.Reason
	}
	return p, nil
}

// Tombstone returns the payment of an order cancelled before any charge: nothing charged, and
// nothing ever will be, since an order has at most one payment.
func Tombstone(id, orderID, reason string) (*Payment, error) {
	switch {
	case id == "":
		return nil, fmt.Errorf("%w: no id", ErrInvalidPayment)
	case orderID == "":
		return nil, fmt.Errorf("%w: no order id", ErrInvalidPayment)
	}
	return &Payment{id: id, orderID: orderID, status: StatusCancelled, reason: reason}, nil
}

// Load rebuilds a stored payment.
func Load(id, orderID, method string, amountMinor int64, status Status, reason string) *Payment {
	return &Payment{id: id, orderID: orderID, method: method, amountMinor: amountMinor, status: status, reason: reason}
}

// Reverse refunds an approved payment. It reports whether it changed anything: a payment
// already reversed stays so (false, nil), so that a repeated compensation is harmless; one that
// was never approved has nothing to refund (ErrNotReversible).
func (p *Payment) Reverse(reason string) (bool, error) {
	switch p.status {
	case StatusApproved:
		p.status, p.reason = StatusReversed, reason
		return true, nil
	case StatusReversed:
		return false, nil
	default:
		return false, fmt.Errorf("%w: %s is %s", ErrNotReversible, p.id, p.status)
	}
}

func (p *Payment) ID() string         { return p.id }
func (p *Payment) OrderID() string    { return p.orderID }
func (p *Payment) Method() string     { return p.method }
func (p *Payment) AmountMinor() int64 { return p.amountMinor }
func (p *Payment) Status() Status     { return p.status }
func (p *Payment) Reason() string     { return p.reason }
func (p *Payment) Approved() bool     { return p.status == StatusApproved }
