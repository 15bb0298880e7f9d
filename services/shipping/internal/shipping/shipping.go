// Package shipping is the shipping domain: the simulated carrier that prices, schedules or
// refuses a shipment, and the shipment it leaves behind.
package shipping

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"strings"
	"time"
)

// Status is where a shipment stands.
type Status string

// Shipment statuses, as stored in shipments.status.
const (
	StatusScheduled Status = "SCHEDULED"
	StatusFailed    Status = "FAILED"
	// StatusCancelled is a shipment of an order cancelled at its saga deadline: one scheduled
	// and then called off, or the tombstone of an order cancelled before anything was
	// scheduled, which takes the order's one shipment so that nothing ever is.
	StatusCancelled Status = "CANCELLED"
)

// The carrier's fixed terms.
const (
	UnitFreightMinor = 150  // 1.50 per item unit, on top of the base freight
	RefusedCountry   = "AQ" // the carrier does not deliver there: the documented trigger for a failure
	MinDeliveryDays  = 3
	MaxDeliveryDays  = 7
	trackingPrefix   = "TRK-"
	trackingLength   = 8
	trackingAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)

// Domain errors.
var (
	ErrInvalidShipment = errors.New("invalid shipment")
	ErrInvalidCarrier  = errors.New("invalid carrier settings")
)

// Freight is what shipping units items costs, in minor units.
func Freight(baseMinor, units int64) int64 {
	return baseMinor + UnitFreightMinor*units
}

// TrackingCode returns "TRK-" followed by 8 characters of [A-Z0-9] drawn from entropy.
func TrackingCode(entropy io.Reader) (string, error) {
	// Rejection sampling keeps every character equally likely: 252 is the largest multiple of
	// 36 that fits in a byte.
	const limit = 256 - 256%len(trackingAlphabet)
	code := make([]byte, 0, trackingLength)
	buf := make([]byte, 2*trackingLength)
	for len(code) < trackingLength {
		if _, err := io.ReadFull(entropy, buf); err != nil {
			return "", fmt.Errorf("tracking code: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(code) < trackingLength {
				code = append(code, trackingAlphabet[int(b)%len(trackingAlphabet)])
			}
		}
	}
	return trackingPrefix + string(code), nil
}

// EstimateDelivery returns when a shipment leaving at now arrives: 3 to 7 whole days later,
// picked by random (values in [0, 1)).
func EstimateDelivery(now time.Time, random func() float64) time.Time {
	days := MinDeliveryDays + int(random()*float64(MaxDeliveryDays-MinDeliveryDays+1))
	days = min(max(days, MinDeliveryDays), MaxDeliveryDays)
	return now.AddDate(0, 0, days)
}

// Env is the time and randomness the carrier draws on; a nil field takes the real one, and
// tests fix them.
type Env struct {
	Now     func() time.Time
	Random  func() float64 // values in [0, 1)
	Entropy io.Reader      // for tracking codes
}

// Carrier is the simulated carrier with its settings.
type Carrier struct {
	baseFreightMinor int64
	failureRate      float64
	env              Env
}

// NewCarrier returns a carrier charging baseFreightMinor per shipment plus 1.50 per unit and
// failing a failureRate share of shipments at random.
func NewCarrier(baseFreightMinor int64, failureRate float64, env Env) (*Carrier, error) {
	if baseFreightMinor < 0 {
		return nil, fmt.Errorf("%w: negative base freight %d", ErrInvalidCarrier, baseFreightMinor)
	}
	if failureRate < 0 || failureRate > 1 {
		return nil, fmt.Errorf("%w: failure rate %v not in [0, 1]", ErrInvalidCarrier, failureRate)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Random == nil {
		env.Random = mathrand.Float64
	}
	if env.Entropy == nil {
		env.Entropy = rand.Reader
	}
	return &Carrier{baseFreightMinor: baseFreightMinor, failureRate: failureRate, env: env}, nil
}

// Shipment is the outcome of shipping one order. An order has at most one shipment.
type Shipment struct {
	id                string
	orderID           string
	status            Status
	trackingCode      string
	freightMinor      int64
	countryCode       string
	estimatedDelivery time.Time
	reason            string
	createdAt         time.Time
}

// Schedule asks the carrier to ship units item units of an order to countryCode. The shipment
// is scheduled, or failed with the reason when the carrier refuses.
func (c *Carrier) Schedule(id, orderID, countryCode string, units int64) (*Shipment, error) {
	switch {
	case id == "":
		return nil, fmt.Errorf("%w: no id", ErrInvalidShipment)
	case orderID == "":
		return nil, fmt.Errorf("%w: no order id", ErrInvalidShipment)
	case units <= 0:
		return nil, fmt.Errorf("%w: %d units", ErrInvalidShipment, units)
	}
	now := c.env.Now()
	s := &Shipment{id: id, orderID: orderID, countryCode: countryCode, createdAt: now}
	switch {
	case strings.EqualFold(countryCode, RefusedCountry):
		s.status, s.reason = StatusFailed, "carrier does not deliver to "+RefusedCountry
		return s, nil
	case c.failureRate > 0 && c.env.Random() < c.failureRate:
		s.status, s.reason = StatusFailed, "carrier unavailable"
		return s, nil
	}
	code, err := TrackingCode(c.env.Entropy)
	if err != nil {
		return nil, err
	}
	s.status, s.trackingCode = StatusScheduled, code
	s.freightMinor = Freight(c.baseFreightMinor, units)
	s.estimatedDelivery = EstimateDelivery(now, c.env.Random)
	return s, nil
}

// Tombstone returns the shipment of an order cancelled before it was scheduled: nothing
// shipped, and nothing ever will be, since an order has at most one shipment.
func Tombstone(id, orderID, reason string, now time.Time) (*Shipment, error) {
	switch {
	case id == "":
		return nil, fmt.Errorf("%w: no id", ErrInvalidShipment)
	case orderID == "":
		return nil, fmt.Errorf("%w: no order id", ErrInvalidShipment)
	}
	return &Shipment{id: id, orderID: orderID, status: StatusCancelled, reason: reason, createdAt: now}, nil
}

// Snapshot is a stored shipment, for storage to load it with Load.
type Snapshot struct {
	ID, OrderID, TrackingCode, CountryCode, Reason string
	Status                                         Status
	FreightMinor                                   int64
	EstimatedDelivery, CreatedAt                   time.Time
}

// Load rebuilds a stored shipment.
func Load(s Snapshot) *Shipment {
	return &Shipment{id: s.ID, orderID: s.OrderID, status: s.Status, trackingCode: s.TrackingCode, freightMinor: s.FreightMinor,
		countryCode: s.CountryCode, estimatedDelivery: s.EstimatedDelivery, reason: s.Reason, createdAt: s.CreatedAt}
}

// Cancel calls off a scheduled shipment and reports whether it did: a failed or cancelled one
// has nothing to call off.
func (s *Shipment) Cancel(reason string) bool {
	if s.status != StatusScheduled {
		return false
	}
	s.status, s.reason = StatusCancelled, reason
	return true
}

func (s *Shipment) ID() string                   { return s.id }
func (s *Shipment) OrderID() string              { return s.orderID }
func (s *Shipment) Status() Status               { return s.status }
func (s *Shipment) Scheduled() bool              { return s.status == StatusScheduled }
func (s *Shipment) TrackingCode() string         { return s.trackingCode }
func (s *Shipment) FreightMinor() int64          { return s.freightMinor }
func (s *Shipment) CountryCode() string          { return s.countryCode }
func (s *Shipment) EstimatedDelivery() time.Time { return s.estimatedDelivery }
func (s *Shipment) Reason() string               { return s.reason }
func (s *Shipment) CreatedAt() time.Time         { return s.createdAt }
