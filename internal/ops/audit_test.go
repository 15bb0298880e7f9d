package ops_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/ops/opstest"
)

func audit(t *testing.T, w *opstest.World, since time.Time) []ops.Violation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vs, err := ops.Audit(ctx, w.Databases(), since)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return vs
}

// rules renders violations as "order rule" lines, sorted, for exact comparison.
func rules(vs []ops.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.OrderID + " " + v.Rule
	}
	slices.Sort(out)
	return out
}

func assertRules(t *testing.T, vs []ops.Violation, want []string) {
	t.Helper()
	slices.Sort(want)
	if got := rules(vs); !slices.Equal(got, want) {
		var b strings.Builder
		for _, v := range vs {
			fmt.Fprintf(&b, "  %s %s: %s\n", v.OrderID, v.Rule, v.Detail)
		}
		t.Errorf("violations:\n%s want rules:\n  %s", b.String(), strings.Join(want, "\n  "))
	}
}

func TestAuditConsistent(t *testing.T) {
	t.Parallel()
	w := opstest.New(t)
	w.Consistent()
	assertRules(t, audit(t, w, time.Time{}), nil)
}

func TestAuditEmpty(t *testing.T) {
	t.Parallel()
	w := opstest.New(t)
	assertRules(t, audit(t, w, time.Time{}), nil)
}

func TestAuditViolations(t *testing.T) {
	t.Parallel()
	w := opstest.New(t)
	p1, p2, p3 := w.Product(100, 2), w.Product(100, 1), w.Product(100, 4)

	// Confirmed but never shipped.
	noShipment := w.Order("CONFIRMED", ops.Item{ProductID: p1, Quantity: 2})
	w.Payment(noShipment, "APPROVED")
	w.Reservation(noShipment, "RESERVED", ops.Item{ProductID: p1, Quantity: 2})

	// Confirmed with everything failed behind it.
	allFailed := w.Order("CONFIRMED", ops.Item{ProductID: p1, Quantity: 1})
	w.Payment(allFailed, "DECLINED")
	w.Reservation(allFailed, "RELEASED", ops.Item{ProductID: p1, Quantity: 1})
	w.Shipment(allFailed, "FAILED")

	// Stuck in the middle of the saga, no record anywhere.
	stuck := w.Order("INVENTORY_RESERVED", ops.Item{ProductID: p2, Quantity: 7})

	// Cancelled, but the money was kept and the stock is still held.
	cancelled := w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})
	w.Payment(cancelled, "APPROVED")
	w.Reservation(cancelled, "RESERVED", ops.Item{ProductID: p2, Quantity: 1})

	// Cancelled without any payment: nothing to reverse, nothing held: fine.
	w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})

	// Cancelled by the saga deadline before anything happened: tombstones everywhere, fine.
	tombstoned := w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})
	w.Payment(tombstoned, "CANCELLED")
	w.Reservation(tombstoned, "CANCELLED")
	w.Shipment(tombstoned, "CANCELLED")

	// Cancelled by the deadline while the payment.failed was on its way: nothing charged, fine.
	declinedLate := w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})
	w.Payment(declinedLate, "DECLINED")

	// Cancelled by the deadline, but the shipment was never called off.
	shipped := w.Order("CANCELLED", ops.Item{ProductID: p2, Quantity: 1})
	w.Payment(shipped, "REVERSED")
	w.Reservation(shipped, "RELEASED", ops.Item{ProductID: p2, Quantity: 1})
	w.Shipment(shipped, "SCHEDULED")

	// Payment failed, yet approved and reserved (and released since).
	payFailed := w.Order("PAYMENT_FAILED", ops.Item{ProductID: p1, Quantity: 1})
	w.Payment(payFailed, "APPROVED")
	w.Reservation(payFailed, "RELEASED", ops.Item{ProductID: p1, Quantity: 1})

	// Payment failed without any payment row.
	noPayment := w.Order("PAYMENT_FAILED")

	// Records of orders order-service never had.
	ghostPay, ghostRes, ghostShip := "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000a2", "00000000-0000-0000-0000-0000000000a3"
	w.Payment(ghostPay, "APPROVED")
	w.Reservation(ghostRes, "RELEASED")
	w.Shipment(ghostShip, "SCHEDULED")

	// An old order outside the -since window.
	old := w.OrderAt("PENDING", time.Now().Add(-2*time.Hour))

	// Stock: p1 reserved 2 = RESERVED 2, but CONFIRMED orders hold 3 (2 + 1).
	// p2 reserved 1 = RESERVED 1, but no CONFIRMED order holds it. p3 reserved 4, held by nothing.
	// A CONFIRMED order of a product inventory does not know.
	unknownProduct := "00000000-0000-0000-0000-0000000000ff"
	ghostStock := w.Order("CONFIRMED", ops.Item{ProductID: unknownProduct, Quantity: 1})
	w.Payment(ghostStock, "APPROVED")
	w.Reservation(ghostStock, "RELEASED")
	w.Shipment(ghostStock, "SCHEDULED")

	want := []string{
		noShipment + " " + ops.RuleConfirmedWithoutShipment,
		allFailed + " " + ops.RuleConfirmedWithoutPayment,
		allFailed + " " + ops.RuleConfirmedWithoutReservation,
		allFailed + " " + ops.RuleConfirmedWithoutShipment,
		stuck + " " + ops.RuleNotTerminal,
		cancelled + " " + ops.RuleCancelledPaymentNotReversed,
		cancelled + " " + ops.RuleCancelledHoldsStock,
		shipped + " " + ops.RuleCancelledShipmentLive,
		payFailed + " " + ops.RulePaymentFailedWithoutDeclined,
		payFailed + " " + ops.RulePaymentFailedHasReservation,
		noPayment + " " + ops.RulePaymentFailedWithoutDeclined,
		ghostPay + " " + ops.RuleOrphanPayment,
		ghostRes + " " + ops.RuleOrphanReservation,
		ghostShip + " " + ops.RuleOrphanShipment,
		ghostStock + " " + ops.RuleConfirmedWithoutReservation,
		" " + ops.RuleConfirmedStockMismatch, // p1
		" " + ops.RuleConfirmedStockMismatch, // p2
		" " + ops.RuleConfirmedStockMismatch, // p3
		" " + ops.RuleReservedStockMismatch,  // p3
		" " + ops.RuleConfirmedStockMismatch, // unknown product
	}
	vs := audit(t, w, time.Now().Add(-time.Hour))
	assertRules(t, vs, want)
	details := ""
	for _, v := range vs {
		details += v.Detail + "\n"
	}
	for _, s := range []string{
		"product " + p1 + ": quantity_reserved 2, CONFIRMED orders hold 3",
		"product " + p2 + ": quantity_reserved 1, CONFIRMED orders hold 0",
		"product " + p3 + ": quantity_reserved 4, RESERVED reservations hold 0",
		"product " + unknownProduct + " (not in inventory): quantity_reserved 0, CONFIRMED orders hold 1",
	} {
		if !strings.Contains(details, s) {
			t.Errorf("no violation says %q; got:\n%s", s, details)
		}
	}

	// Without a window the old order counts too.
	assertRules(t, audit(t, w, time.Time{}), append(want, old+" "+ops.RuleNotTerminal))
}

// The databases' unique keys rule duplicates out, so the rule is checked on a snapshot.
func TestCheckDuplicates(t *testing.T) {
	t.Parallel()
	const o = "00000000-0000-0000-0000-000000000001"
	s := &ops.Snapshot{
		Orders:       []ops.Order{{ID: o, Status: "PAYMENT_FAILED"}},
		Payments:     []ops.Record{{ID: "p1", OrderID: o, Status: "DECLINED"}, {ID: "p2", OrderID: o, Status: "DECLINED"}},
		Shipments:    []ops.Record{{ID: "s1", OrderID: o, Status: "FAILED"}, {ID: "s2", OrderID: o, Status: "FAILED"}},
		Reservations: []ops.Reservation{{Record: ops.Record{ID: "r1", OrderID: o, Status: "RELEASED"}}, {Record: ops.Record{ID: "r2", OrderID: o, Status: "RELEASED"}}},
	}
	assertRules(t, ops.Check(s, time.Time{}), []string{
		o + " " + ops.RuleDuplicatePayment,
		o + " " + ops.RuleDuplicateReservation,
		o + " " + ops.RuleDuplicateShipment,
		o + " " + ops.RulePaymentFailedHasReservation,
	})
}

func TestCheckDeadLetters(t *testing.T) {
	t.Parallel()
	depths := []ops.QueueDepth{{Queue: "a.dlq", Depth: 2}, {Queue: "b.dlq"}, {Queue: "c.dlq", Depth: 1}}
	for _, tc := range []struct {
		allow int
		want  []string
	}{
		{0, []string{"a.dlq holds 2 dead letter(s)", "c.dlq holds 1 dead letter(s)"}},
		{2, []string{"a.dlq holds 2 dead letter(s)", "c.dlq holds 1 dead letter(s)"}},
		{3, nil},
	} {
		var got []string
		for _, v := range ops.CheckDeadLetters(depths, tc.allow) {
			if v.Rule != ops.RuleDeadLetters || v.OrderID != "" {
				t.Errorf("allow %d: unexpected %+v", tc.allow, v)
			}
			got = append(got, v.Detail)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("allow %d: got %q, want %q", tc.allow, got, tc.want)
		}
	}
	if vs := ops.CheckDeadLetters([]ops.QueueDepth{{Queue: "a.dlq"}}, 0); vs != nil {
		t.Errorf("empty queues: %+v", vs)
	}
}

// The -since audit reads in batches what the full audit reads at once; both find the same.
func TestAuditSinceMatchesCheck(t *testing.T) {
	t.Parallel()
	w := opstest.New(t)
	w.Consistent()
	w.Fill(7, time.Now(), time.Minute)
	p := w.Product(10, 1)
	stuck := w.Order("PAYMENT_APPROVED", ops.Item{ProductID: p, Quantity: 1})
	w.Payment(stuck, "APPROVED")
	w.Reservation(stuck, "RESERVED", ops.Item{ProductID: p, Quantity: 1})
	w.Payment(uuid.NewString(), "DECLINED") // an orphan
	w.OrderAt("PENDING", time.Now().Add(-2*time.Hour))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := time.Now().Add(-time.Hour)
	s, err := ops.Load(ctx, w.Databases())
	if err != nil {
		t.Fatal(err)
	}
	want := ops.Check(s, since)
	if len(want) == 0 {
		t.Fatal("no violations to compare")
	}
	for _, batch := range []int{1, 3, 1000} {
		got, err := ops.AuditSince(ctx, w.Databases(), since, batch, true)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("batch %d:\n got %+v\nwant %+v", batch, got, want)
		}
	}
	// Without the stock totals, the same less the stock rules.
	var noStock []ops.Violation
	for _, v := range want {
		if v.Rule != ops.RuleReservedStockMismatch && v.Rule != ops.RuleConfirmedStockMismatch {
			noStock = append(noStock, v)
		}
	}
	if len(noStock) == len(want) {
		t.Fatal("no stock violation to leave out")
	}
	if got, err := ops.AuditSince(ctx, w.Databases(), since, 2, false); err != nil || !slices.Equal(got, noStock) {
		t.Errorf("without stock: %+v, %v\nwant %+v", got, err, noStock)
	}
}

// TestAuditSinceScale fills the order database with ORDERSAGA_AUDIT_SCALE orders (one every
// 100ms going back, so about 6000 in the last 10 minutes) and prints how long the -since 10m
// audit takes, with and without -stock, and the full audit with ORDERSAGA_AUDIT_SCALE_FULL=1:
//
//	ORDERSAGA_AUDIT_SCALE=1000000 go test -count=1 -run TestAuditSinceScale -v ./internal/ops/
func TestAuditSinceScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ORDERSAGA_AUDIT_SCALE"))
	if n <= 0 {
		t.Skip("set ORDERSAGA_AUDIT_SCALE to a number of orders (1000000) to measure the audit")
	}
	w := opstest.New(t)
	start := time.Now()
	w.Fill(n, time.Now(), 100*time.Millisecond)
	t.Logf("filled %d orders, with payments, reservations and shipments, in %s", n, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, run := range []struct {
		name  string
		stock bool
	}{{"audit -since 10m", false}, {"audit -since 10m (warm)", false}, {"audit -since 10m -stock", true}} {
		start = time.Now()
		vs, err := ops.AuditSince(ctx, w.Databases(), time.Now().Add(-10*time.Minute), ops.DefaultAuditBatch, run.stock)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s over %d orders: %s, %d violation(s)", run.name, n, time.Since(start).Round(time.Millisecond), len(vs))
		if len(vs) > 0 {
			t.Errorf("violations in consistent data: %+v", vs[:min(len(vs), 5)])
		}
	}
	if os.Getenv("ORDERSAGA_AUDIT_SCALE_FULL") != "" {
		start = time.Now()
		vs, err := ops.Audit(ctx, w.Databases(), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("full audit over %d orders: %s, %d violation(s)", n, time.Since(start).Round(time.Millisecond), len(vs))
	}
}
