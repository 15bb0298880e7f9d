package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/ops/opstest"
)

func loadOrder(t *testing.T, w *opstest.World, id string) *ops.OrderView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := ops.LoadOrder(ctx, w.Databases(), id)
	if err != nil {
		t.Fatalf("load order: %v", err)
	}
	return v
}

func TestLoadOrder(t *testing.T) {
	t.Parallel()
	w := opstest.New(t)
	p := w.Product(100, 2)
	id := w.Order("CONFIRMED", ops.Item{ProductID: p, Quantity: 2})
	w.History(id, "PENDING", "")
	w.History(id, "PAYMENT_APPROVED", "")
	w.History(id, "CONFIRMED", "")
	pay := w.Payment(id, "APPROVED")
	res := w.Reservation(id, "RESERVED", ops.Item{ProductID: p, Quantity: 2})
	ship := w.Shipment(id, "SCHEDULED")
	other := w.Order("PENDING")
	w.Outbox("order", other, "order.created", "order.v1.OrderCreated")

	v := loadOrder(t, w, id)
	if !v.Found() || v.Order == nil || v.Order.Status != "CONFIRMED" || v.Order.Total != "10.00" ||
		len(v.Order.Items) != 1 || v.Order.Items[0] != (ops.OrderLine{Line: 1, ProductID: p, Quantity: 2, UnitPriceMinor: 500, UnitPrice: "5.00"}) {
		t.Fatalf("order: %+v", v.Order)
	}
	var statuses []string
	for _, h := range v.History {
		statuses = append(statuses, h.Status)
	}
	if strings.Join(statuses, " ") != "PENDING PAYMENT_APPROVED CONFIRMED" {
		t.Errorf("history: %v", statuses)
	}
	if v.Payment == nil || v.Payment.ID != pay || v.Payment.Status != "APPROVED" || v.Payment.Amount != "10.00" {
		t.Errorf("payment: %+v", v.Payment)
	}
	if v.Reservation == nil || v.Reservation.ID != res || len(v.Reservation.Items) != 1 || v.Reservation.Items[0].Quantity != 2 {
		t.Errorf("reservation: %+v", v.Reservation)
	}
	if v.Shipment == nil || v.Shipment.ID != ship || v.Shipment.Status != "SCHEDULED" {
		t.Errorf("shipment: %+v", v.Shipment)
	}
	if len(v.Outbox) != 0 || v.TraceID != "" {
		t.Errorf("outbox of another order shows: %+v, trace %q", v.Outbox, v.TraceID)
	}

	// Events still in two outboxes, one with a traceparent column as tracing adds it.
	w.Exec("shipping", `ALTER TABLE outbox ADD COLUMN traceparent text`)
	ev1 := w.Outbox("payment", id, "payment.approved", "payment.v1.PaymentApproved")
	ev2 := w.Outbox("shipping", id, "shipping.scheduled", "shipping.v1.ShippingScheduled")
	w.Exec("shipping", `UPDATE outbox SET traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' WHERE event_id = $1`, ev2)
	v = loadOrder(t, w, id)
	if len(v.Outbox) != 2 || v.Outbox[0].Service != "payment" || v.Outbox[0].EventID != ev1 || v.Outbox[0].DueAt.IsZero() ||
		v.Outbox[1].Service != "shipping" || v.Outbox[1].EventID != ev2 || v.Outbox[1].RoutingKey != "shipping.scheduled" {
		t.Errorf("outbox: %+v", v.Outbox)
	}
	if v.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %q", v.TraceID)
	}
	var out bytes.Buffer
	if err := ops.PrintOrder(&out, v); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{id + "  CONFIRMED", "2 × " + p + " at 5.00", "PAYMENT_APPROVED",
		"payment", pay + "  APPROVED  10.00 credit_card", res + "  RESERVED  2 × " + p, ship + "  SCHEDULED",
		"2 pending", "shipping.scheduled shipping.v1.ShippingScheduled, event " + ev2, "not looked at",
		"trace", "4bf92f3577b34da6a3ce929d0e0e4736"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, &out)
		}
	}
	if _, err := json.Marshal(v); err != nil {
		t.Error(err)
	}

	// Records of an order order-service never had still show; an order nobody knows is not found.
	ghost := uuid.NewString()
	w.Payment(ghost, "APPROVED")
	if v := loadOrder(t, w, ghost); !v.Found() || v.Order != nil || v.Payment == nil {
		t.Errorf("ghost: %+v", v)
	}
	out.Reset()
	if v := loadOrder(t, w, uuid.NewString()); v.Found() {
		t.Errorf("unknown order found: %+v", v)
	} else if err := ops.PrintOrder(&out, v); err != nil || !strings.Contains(out.String(), "not in the order database") ||
		!regexp.MustCompile(`(?m)^trace +-$`).MatchString(out.String()) {
		t.Errorf("unknown order printed as:\n%s", &out)
	}
}

func TestTraceID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01": "0af7651916cd43dd8448eb211c80319c",
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-00": "0af7651916cd43dd8448eb211c80319c",
		"00-00000000000000000000000000000000-b7ad6b7169203331-01": "",
		"00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01": "",
		"0af7651916cd43dd8448eb211c80319c":                        "",
		"":                                                        "",
	} {
		if got := ops.TraceID(in); got != want {
			t.Errorf("TraceID(%q) = %q, want %q", in, got, want)
		}
	}
}
