package order

// Status is where an order stands in the saga.
type Status string

// The statuses of an order (fixed names: DESIGN.md).
const (
	StatusPending           Status = "PENDING"
	StatusPaymentApproved   Status = "PAYMENT_APPROVED"
	StatusInventoryReserved Status = "INVENTORY_RESERVED"
	StatusConfirmed         Status = "CONFIRMED"
	StatusPaymentFailed     Status = "PAYMENT_FAILED"
	StatusInventoryFailed   Status = "INVENTORY_FAILED"
	StatusShippingFailed    Status = "SHIPPING_FAILED"
	StatusCancelled         Status = "CANCELLED"
)

// Statuses lists every status.
var Statuses = []Status{
	StatusPending, StatusPaymentApproved, StatusInventoryReserved, StatusConfirmed,
	StatusPaymentFailed, StatusInventoryFailed, StatusShippingFailed, StatusCancelled,
}

// Terminal reports whether s is final: nothing changes an order in it any more.
func (s Status) Terminal() bool {
	return s == StatusConfirmed || s == StatusPaymentFailed || s == StatusCancelled
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// EventKind is a saga event that moves an order, named by its routing key.
type EventKind string

// The events order-service consumes, and DeadlinePassed, which order-service raises itself
// when an order outlives its saga deadline.
const (
	PaymentApproved   EventKind = "payment.approved"
	PaymentFailed     EventKind = "payment.failed"
	PaymentReversed   EventKind = "payment.reversed"
	InventoryReserved EventKind = "inventory.reserved"
	InventoryFailed   EventKind = "inventory.failed"
	ShippingScheduled EventKind = "shipping.scheduled"
	ShippingFailed    EventKind = "shipping.failed"
	DeadlinePassed    EventKind = "saga.deadline-passed"
)

// EventKinds lists every event kind.
var EventKinds = []EventKind{
	PaymentApproved, PaymentFailed, PaymentReversed, InventoryReserved, InventoryFailed,
	ShippingScheduled, ShippingFailed, DeadlinePassed,
}

// transition is one rule: the event moves an order in any of from to to.
type transition struct {
	from []Status
	to   Status
}

// transitions are THE rules of the saga, the only place they live. Events arrive on separate
// queues in any order, so a rule accepts every earlier status it can overtake (shipping.scheduled
// may come before payment.approved), while an event that finds the order past its from
// statuses is late and does nothing: status only moves forward and terminal statuses never change.
var transitions = map[EventKind]transition{
	PaymentApproved:   {from: []Status{StatusPending}, to: StatusPaymentApproved},
	InventoryReserved: {from: []Status{StatusPending, StatusPaymentApproved}, to: StatusInventoryReserved},
	ShippingScheduled: {from: []Status{StatusPending, StatusPaymentApproved, StatusInventoryReserved}, to: StatusConfirmed},
	PaymentFailed:     {from: []Status{StatusPending}, to: StatusPaymentFailed},
	InventoryFailed:   {from: []Status{StatusPending, StatusPaymentApproved}, to: StatusInventoryFailed},
	ShippingFailed:    {from: []Status{StatusPending, StatusPaymentApproved, StatusInventoryReserved}, to: StatusShippingFailed},
	// A reversal ends every saga that has not ended yet: it is the last word of compensation.
	PaymentReversed: {from: []Status{StatusPending, StatusPaymentApproved, StatusInventoryReserved,
		StatusInventoryFailed, StatusShippingFailed}, to: StatusCancelled},
	// The deadline ends every saga that has not ended by then, whatever it waits for: the
	// cancellation is announced (order.cancelled) and the other services undo what they did.
	DeadlinePassed: {from: []Status{StatusPending, StatusPaymentApproved, StatusInventoryReserved,
		StatusInventoryFailed, StatusShippingFailed}, to: StatusCancelled},
}

// next returns the status an order in s moves to on kind, and whether it moves.
func next(s Status, kind EventKind) (Status, bool, error) {
	t, ok := transitions[kind]
	if !ok {
		return s, false, ErrUnknownEvent
	}
	for _, f := range t.from {
		if f == s {
			return t.to, true, nil
		}
	}
	return s, false, nil
}
