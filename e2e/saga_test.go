package e2e

import (
	"regexp"
	"slices"
	"testing"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

var trackingCode = regexp.MustCompile(`^TRK-[A-Z0-9]{8}$`)

const (
	pending   = orderv1.OrderStatus_ORDER_STATUS_PENDING
	confirmed = orderv1.OrderStatus_ORDER_STATUS_CONFIRMED
	payFailed = orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED
	shipFail  = orderv1.OrderStatus_ORDER_STATUS_SHIPPING_FAILED
	cancelled = orderv1.OrderStatus_ORDER_STATUS_CANCELLED
)

// checkConfirmed asserts what a confirmed 2 × 49.90 order must show.
func checkConfirmed(t *testing.T, o *orderv1.Order) {
	t.Helper()
	wantStatus(t, o, confirmed)
	if !trackingCode.MatchString(o.GetTrackingCode()) {
		t.Errorf("tracking code %q does not match %s", o.GetTrackingCode(), trackingCode)
	}
	if o.GetTotal() != "99.80" {
		t.Errorf("total %q, want 99.80", o.GetTotal())
	}
	if o.GetFailureReason() != "" {
		t.Errorf("failure reason %q on a confirmed order", o.GetFailureReason())
	}
	h := history(o)
	if len(h) < 2 || h[0] != pending || h[len(h)-1] != confirmed {
		t.Errorf("history %v, want PENDING first and CONFIRMED last", h)
	}
	if got := paymentStatus(t, o.GetOrderId()); got != "APPROVED" {
		t.Errorf("payment status %q, want APPROVED", got)
	}
}

func TestHappyPathGRPC(t *testing.T) {
	t.Parallel()
	p := product(t, 100)
	created := create(t, orderReq(p, 2, "49.90"))
	if created.GetStatus() != pending {
		t.Errorf("created status %s, want PENDING", created.GetStatus())
	}
	o := waitTerminal(t, created.GetOrderId())
	checkConfirmed(t, o)
	if got := o.GetItems(); len(got) != 1 || got[0].GetProductId() != p || got[0].GetQuantity() != 2 || got[0].GetUnitPrice() != "49.90" {
		t.Errorf("items %v", got)
	}
	if o.GetShippingAddress().GetCountryCode() != "BR" {
		t.Errorf("shipping address %v", o.GetShippingAddress())
	}
	if s := stock(t, p); s.GetReserved() != 2 || s.GetAvailable() != 98 {
		t.Errorf("stock %v, want reserved 2, available 98", s)
	}
}

func TestDeclinedCard(t *testing.T) {
	t.Parallel()
	p := product(t, 5)
	req := orderReq(p, 1, "10.00")
	req.PaymentMethod = "declined_card"
	o := waitTerminal(t, create(t, req).GetOrderId())
	wantStatus(t, o, payFailed)
	if o.GetFailureReason() == "" {
		t.Error("no failure reason")
	}
	if got := paymentStatus(t, o.GetOrderId()); got != "DECLINED" {
		t.Errorf("payment status %q, want DECLINED", got)
	}
	if s := stock(t, p); s.GetReserved() != 0 || s.GetAvailable() != 5 {
		t.Errorf("stock %v, want nothing reserved", s)
	}
}

// checkCompensated asserts a cancelled order whose payment was reversed and which holds no stock.
func checkCompensated(t *testing.T, o *orderv1.Order, products ...string) {
	t.Helper()
	wantStatus(t, o, cancelled)
	if o.GetFailureReason() == "" {
		t.Error("no failure reason")
	}
	if o.GetTrackingCode() != "" {
		t.Errorf("tracking code %q on a cancelled order", o.GetTrackingCode())
	}
	if got := paymentStatus(t, o.GetOrderId()); got != "REVERSED" {
		t.Errorf("payment status %q, want REVERSED", got)
	}
	for _, p := range products {
		eventually(t, "stock of "+p+" released", func() bool { return stock(t, p).GetReserved() == 0 })
	}
	if n := count(t, "inventory", "SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RESERVED'", o.GetOrderId()); n != 0 {
		t.Errorf("%d reservations still held", n)
	}
}

func TestOutOfStock(t *testing.T) {
	t.Parallel()
	p := product(t, 1)
	o := waitTerminal(t, create(t, orderReq(p, 2, "49.90")).GetOrderId())
	checkCompensated(t, o, p)
	t.Logf("failure reason: %s", o.GetFailureReason())
	if s := stock(t, p); s.GetTotal() != 1 || s.GetAvailable() != 1 {
		t.Errorf("stock %v, want total 1 available 1", s)
	}
}

func TestUnknownProduct(t *testing.T) {
	t.Parallel()
	o := waitTerminal(t, create(t, orderReq(uuid.NewString(), 1, "5.00")).GetOrderId())
	checkCompensated(t, o)
	t.Logf("failure reason: %s", o.GetFailureReason())
}

func TestShippingRefused(t *testing.T) {
	t.Parallel()
	p := product(t, 3)
	req := orderReq(p, 2, "49.90")
	req.ShippingAddress.CountryCode = "AQ"
	o := waitTerminal(t, create(t, req).GetOrderId())
	checkCompensated(t, o, p)
	if h := history(o); !slices.Contains(h, shipFail) || h[len(h)-1] != cancelled {
		t.Errorf("history %v, want SHIPPING_FAILED and CANCELLED last", h)
	}
	if n := count(t, "inventory", "SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RELEASED'", o.GetOrderId()); n != 1 {
		t.Errorf("%d released reservations, want 1", n)
	}
	if s := stock(t, p); s.GetAvailable() != 3 {
		t.Errorf("stock %v, want all 3 available", s)
	}
}

func TestMultiItemOneShort(t *testing.T) {
	t.Parallel()
	plenty, short1, plenty2 := product(t, 50), product(t, 1), product(t, 50)
	req := orderReq(plenty, 2, "10.00")
	req.Items = append(req.Items,
		&orderv1.LineItem{ProductId: short1, Quantity: 2, UnitPrice: "3.50"},
		&orderv1.LineItem{ProductId: plenty2, Quantity: 1, UnitPrice: "0.99"})
	o := waitTerminal(t, create(t, req).GetOrderId())
	if o.GetTotal() != "27.99" {
		t.Errorf("total %q, want 27.99", o.GetTotal())
	}
	checkCompensated(t, o, plenty, short1, plenty2)
	if n := count(t, "inventory", "SELECT count(*) FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id WHERE r.order_id = $1", o.GetOrderId()); n != 0 {
		t.Errorf("%d reservation items left for a failed reservation", n)
	}
}
