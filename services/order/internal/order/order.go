// Package order is the order aggregate of order-service and the rules that move it through the
// saga. It does no I/O.
package order

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits on what one order may hold (the lengths of its text are in text.go).
const (
	MaxItems    = 100
	MaxQuantity = 1_000_000
)

// PaymentMethods are the methods the simulated gateway knows.
var PaymentMethods = []string{"credit_card", "debit_card", "declined_card"}

// Item is one line of an order.
type Item struct {
	ProductID string
	Quantity  int32
	UnitPrice Money
}

// Address is where an order is shipped. Only CountryCode matters to the saga.
type Address struct {
	Recipient   string `json:"recipient,omitempty"`
	Line1       string `json:"line1,omitempty"`
	Line2       string `json:"line2,omitempty"`
	City        string `json:"city,omitempty"`
	PostalCode  string `json:"postal_code,omitempty"`
	CountryCode string `json:"country_code,omitempty"`
}

// StatusChange is one step of an order's history.
type StatusChange struct {
	Status Status
	Reason string
	At     time.Time
}

// Event is a saga event about an order.
type Event struct {
	ID           string
	OrderID      string
	Kind         EventKind
	Reason       string // failure and reversal events
	TrackingCode string // shipping.scheduled
}

// Order is the aggregate: an order and where it stands in the saga.
type Order struct {
	id            string
	customerID    string
	paymentMethod string
	status        Status
	items         []Item
	total         Money
	address       *Address
	failureReason string
	trackingCode  string
	requestID     string
	createdAt     time.Time
	updatedAt     time.Time
	history       []StatusChange
	version       int // history entries, also when history is not loaded
}

// Update is what one status change did to an order, as its watchers see it.
type Update struct {
	OrderID       string       `json:"order_id"`
	Version       int          `json:"version"` // the order's count of status changes after this one
	Change        StatusChange `json:"change"`
	FailureReason string       `json:"failure_reason,omitempty"`
	TrackingCode  string       `json:"tracking_code,omitempty"`
	CreatedAt     time.Time    `json:"created_at"` // when the order was placed
}

// Params is what a client asks for when it places an order.
type Params struct {
	CustomerID      string
	PaymentMethod   string
	Items           []Item
	ShippingAddress *Address // optional
	RequestID       string   // optional idempotency key
}

// New validates p and returns a new PENDING order placed at now. A validation error is a
// *FieldError naming the field. Ids are stored in their canonical lower-case form.
func New(p Params, now time.Time) (*Order, error) {
	customerID, err := ParseID("customer_id", p.CustomerID)
	if err != nil {
		return nil, err
	}
	if err := checkText("payment_method", p.PaymentMethod, MaxPaymentMethodLen); err != nil {
		return nil, err
	}
	if !validMethod(p.PaymentMethod) {
		return nil, invalid("payment_method", "must be one of "+strings.Join(PaymentMethods, ", "))
	}
	if len(p.Items) == 0 {
		return nil, invalid("items", "must not be empty")
	}
	if len(p.Items) > MaxItems {
		return nil, invalid("items", fmt.Sprintf("must hold at most %d items", MaxItems))
	}
	var total Money
	items := make([]Item, len(p.Items))
	for i, it := range p.Items {
		field := fmt.Sprintf("items[%d]", i)
		productID, err := ParseID(field+".product_id", it.ProductID)
		if err != nil {
			return nil, err
		}
		if it.Quantity <= 0 {
			return nil, invalid(field+".quantity", "must be greater than 0")
		}
		if it.Quantity > MaxQuantity {
			return nil, invalid(field+".quantity", fmt.Sprintf("must be at most %d", MaxQuantity))
		}
		if it.UnitPrice < 0 {
			return nil, invalid(field+".unit_price", "must not be negative")
		}
		line, ok := it.UnitPrice.mul(int64(it.Quantity))
		if ok {
			total, ok = total.add(line)
		}
		if !ok {
			return nil, invalid(field, "order total is too large")
		}
		// Normalised so that the same product reads the same everywhere.
		items[i] = Item{ProductID: productID, Quantity: it.Quantity, UnitPrice: it.UnitPrice}
	}
	var addr *Address
	if p.ShippingAddress != nil {
		a := *p.ShippingAddress
		if err := a.validate(); err != nil {
			return nil, err
		}
		a.CountryCode = strings.ToUpper(strings.TrimSpace(a.CountryCode))
		if a.CountryCode != "" && !countryCode(a.CountryCode) {
			return nil, invalid("shipping_address.country_code", "must be an ISO 3166-1 alpha-2 code such as BR")
		}
		addr = &a
	}
	if err := checkText("request_id", p.RequestID, MaxRequestIDLen); err != nil {
		return nil, err
	}
	// PostgreSQL keeps microseconds: truncating here makes the order read back equal.
	now = now.UTC().Truncate(time.Microsecond)
	return &Order{
		id:            uuid.Must(uuid.NewV7()).String(), // time-ordered: index-friendly
		customerID:    customerID,
		paymentMethod: p.PaymentMethod,
		status:        StatusPending,
		items:         items,
		total:         total,
		address:       addr,
		requestID:     p.RequestID,
		createdAt:     now,
		updatedAt:     now,
		history:       []StatusChange{{Status: StatusPending, Reason: "order.created", At: now}},
		version:       1,
	}, nil
}

// validate checks the length and characters of every field of a.
func (a Address) validate() error {
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"recipient", a.Recipient, MaxRecipientLen},
		{"line1", a.Line1, MaxAddressLineLen},
		{"line2", a.Line2, MaxAddressLineLen},
		{"city", a.City, MaxCityLen},
		{"postal_code", a.PostalCode, MaxPostalCodeLen},
		{"country_code", a.CountryCode, 2 + 8}, // room for the spaces that are trimmed
	} {
		if err := checkText("shipping_address."+f.name, f.value, f.max); err != nil {
			return err
		}
	}
	return nil
}

func validMethod(m string) bool {
	for _, v := range PaymentMethods {
		if m == v {
			return true
		}
	}
	return false
}

func countryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// Snapshot is an order's stored state, for storage to load it with Restore.
type Snapshot struct {
	ID              string
	CustomerID      string
	PaymentMethod   string
	Status          Status
	Items           []Item
	Total           Money
	ShippingAddress *Address
	FailureReason   string
	TrackingCode    string
	RequestID       string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	History         []StatusChange
	Version         int // count of status changes; len(History) when 0
}

// Restore rebuilds an order from storage. It does not validate: storage only holds orders that
// New accepted.
func Restore(s Snapshot) *Order {
	return &Order{
		id:            s.ID,
		customerID:    s.CustomerID,
		paymentMethod: s.PaymentMethod,
		status:        s.Status,
		items:         s.Items,
		total:         s.Total,
		address:       s.ShippingAddress,
		failureReason: s.FailureReason,
		trackingCode:  s.TrackingCode,
		requestID:     s.RequestID,
		createdAt:     s.CreatedAt,
		updatedAt:     s.UpdatedAt,
		history:       s.History,
		version:       cmp.Or(s.Version, len(s.History)),
	}
}

// Apply moves the order by a saga event at now, following the transition rules. It returns the
// status change it made, if any: a late event, or any event on a terminal order, changes nothing
// and is no error.
func (o *Order) Apply(e Event, now time.Time) (StatusChange, bool, error) {
	to, ok, err := next(o.status, e.Kind)
	if err != nil || !ok {
		return StatusChange{}, false, err
	}
	now = now.UTC().Truncate(time.Microsecond)
	reason := e.Reason
	switch to {
	case StatusConfirmed:
		o.trackingCode = e.TrackingCode
	case StatusPaymentFailed, StatusInventoryFailed, StatusShippingFailed:
		if reason == "" {
			reason = string(e.Kind)
		}
		o.failureReason = reason
	case StatusCancelled:
		if e.Kind == DeadlinePassed {
			// The deadline is why the order ends; a failure before it says what was under way.
			if reason == "" {
				reason = string(e.Kind)
			}
			if o.failureReason != "" {
				o.failureReason = reason + " (after: " + o.failureReason + ")"
			} else {
				o.failureReason = reason
			}
			break
		}
		// The failure that started the compensation says more than the reversal that ended it.
		if o.failureReason == "" {
			if reason == "" {
				reason = string(e.Kind)
			}
			o.failureReason = reason
		}
	}
	if reason == "" {
		reason = string(e.Kind)
	}
	o.status = to
	o.updatedAt = now
	change := StatusChange{Status: to, Reason: reason, At: now}
	o.history = append(o.history, change)
	o.version++
	return change, true, nil
}

// ID returns the order's id.
func (o *Order) ID() string { return o.id }

// CustomerID returns the customer's id.
func (o *Order) CustomerID() string { return o.customerID }

// PaymentMethod returns how the order is paid.
func (o *Order) PaymentMethod() string { return o.paymentMethod }

// Status returns where the order stands.
func (o *Order) Status() Status { return o.status }

// Items returns the order's lines; the caller must not modify them.
func (o *Order) Items() []Item { return o.items }

// Total returns the sum of quantity * unit price over the items.
func (o *Order) Total() Money { return o.total }

// ShippingAddress returns where the order goes, or nil.
func (o *Order) ShippingAddress() *Address { return o.address }

// CountryCode returns the shipping country, or "" without an address.
func (o *Order) CountryCode() string {
	if o.address == nil {
		return ""
	}
	return o.address.CountryCode
}

// FailureReason returns why the order failed, or "".
func (o *Order) FailureReason() string { return o.failureReason }

// TrackingCode returns the carrier's tracking code once shipping is scheduled.
func (o *Order) TrackingCode() string { return o.trackingCode }

// RequestID returns the client's idempotency key, or "".
func (o *Order) RequestID() string { return o.requestID }

// CreatedAt returns when the order was placed.
func (o *Order) CreatedAt() time.Time { return o.createdAt }

// UpdatedAt returns when the order last changed.
func (o *Order) UpdatedAt() time.Time { return o.updatedAt }

// Follow applies an update made to another copy of the order, if it is the next one: it
// reports false, changing nothing, when the update is not the order's next version.
func (o *Order) Follow(u Update) bool {
	if u.OrderID != o.id || u.Version != o.version+1 {
		return false
	}
	o.status = u.Change.Status
	o.failureReason = u.FailureReason
	o.trackingCode = u.TrackingCode
	o.updatedAt = u.Change.At
	o.history = append(o.history, u.Change)
	o.version = u.Version
	return true
}

// Clone returns a copy of the order that shares nothing the copies may change.
func (o *Order) Clone() *Order {
	c := *o
	c.history = slices.Clone(o.history)
	return &c
}

// Version counts the order's status changes, its first PENDING included.
func (o *Order) Version() int { return o.version }

// Update describes the order's last status change, for its watchers.
func (o *Order) Update(change StatusChange) Update {
	return Update{OrderID: o.id, Version: o.version, Change: change, FailureReason: o.failureReason, TrackingCode: o.trackingCode, CreatedAt: o.createdAt}
}

// History returns the order's status changes, oldest first; the caller must not modify it.
func (o *Order) History() []StatusChange { return o.history }
