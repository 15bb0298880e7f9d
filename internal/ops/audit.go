package ops

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Violation is one broken invariant. OrderID is empty for those about a product or a queue.
type Violation struct {
	OrderID string `json:"order_id,omitempty"`
	Rule    string `json:"rule"`
	Detail  string `json:"detail"`
}

// Rules the audit checks.
const (
	RuleNotTerminal                  = "order-not-terminal"
	RuleDuplicatePayment             = "duplicate-payment"
	RuleDuplicateReservation         = "duplicate-reservation"
	RuleDuplicateShipment            = "duplicate-shipment"
	RuleConfirmedWithoutPayment      = "confirmed-without-approved-payment"
	RuleConfirmedWithoutReservation  = "confirmed-without-reservation"
	RuleConfirmedWithoutShipment     = "confirmed-without-shipment"
	RuleCancelledPaymentNotReversed  = "cancelled-payment-not-reversed"
	RuleCancelledHoldsStock          = "cancelled-holds-stock"
	RuleCancelledShipmentLive        = "cancelled-shipment-live"
	RulePaymentFailedWithoutDeclined = "payment-failed-without-declined-payment"
	RulePaymentFailedHasReservation  = "payment-failed-has-reservation"
	RuleReservedStockMismatch        = "reserved-stock-mismatch"
	RuleConfirmedStockMismatch       = "confirmed-stock-mismatch"
	RuleOrphanPayment                = "orphan-payment"
	RuleOrphanReservation            = "orphan-reservation"
	RuleOrphanShipment               = "orphan-shipment"
	RuleDeadLetters                  = "dead-letters"
)

const (
	statusConfirmed     = "CONFIRMED"
	statusCancelled     = "CANCELLED"
	statusPaymentFailed = "PAYMENT_FAILED"
	statusReserved      = "RESERVED"
)

// Querier runs a query; *pgx.Conn and *pgxpool.Pool are both one.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Databases are the saga's four databases.
type Databases struct {
	Order, Payment, Inventory, Shipping Querier
}

// Snapshot is what the audit reads from the databases.
type Snapshot struct {
	Orders       []Order
	Payments     []Record
	Reservations []Reservation
	Shipments    []Record
	Products     []Product
}

// Order is an order with its items.
type Order struct {
	ID        string
	Status    string
	CreatedAt time.Time
	Items     []Item
}

// Item is a product and a quantity, of an order or a reservation.
type Item struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// Record is a payment or a shipment: what the audit needs of it.
type Record struct {
	ID      string
	OrderID string
	Status  string
}

// Reservation is a stock reservation with its items.
type Reservation struct {
	Record
	Items []Item
}

// Product is a product's reserved stock.
type Product struct {
	ID       string
	Reserved int64
}

// Load reads a snapshot. The four databases are read one after the other, not at one instant:
// audit a quiet system, or expect orders in flight to show up as violations.
func Load(ctx context.Context, dbs Databases) (*Snapshot, error) {
	var s Snapshot
	var err error
	if s.Orders, err = query(ctx, dbs.Order, "orders",
		`SELECT id::text, status, created_at FROM orders ORDER BY id`, func(row pgx.CollectableRow) (Order, error) {
			var o Order
			err := row.Scan(&o.ID, &o.Status, &o.CreatedAt)
			return o, err
		}); err != nil {
		return nil, err
	}
	type owned struct {
		Owner string
		Item
	}
	rowToOwned := func(row pgx.CollectableRow) (owned, error) {
		var o owned
		err := row.Scan(&o.Owner, &o.ProductID, &o.Quantity)
		return o, err
	}
	orderItems, err := query(ctx, dbs.Order, "order_items",
		`SELECT order_id::text, product_id::text, quantity FROM order_items ORDER BY order_id, line`, rowToOwned)
	if err != nil {
		return nil, err
	}
	byOrder := map[string]int{}
	for i, o := range s.Orders {
		byOrder[o.ID] = i
	}
	for _, it := range orderItems {
		if i, ok := byOrder[it.Owner]; ok {
			s.Orders[i].Items = append(s.Orders[i].Items, it.Item)
		}
	}
	records := `SELECT id::text, order_id::text, status FROM %s ORDER BY id`
	if s.Payments, err = query(ctx, dbs.Payment, "payments", fmt.Sprintf(records, "payments"), pgx.RowToStructByPos[Record]); err != nil {
		return nil, err
	}
	if s.Shipments, err = query(ctx, dbs.Shipping, "shipments", fmt.Sprintf(records, "shipments"), pgx.RowToStructByPos[Record]); err != nil {
		return nil, err
	}
	reservations, err := query(ctx, dbs.Inventory, "reservations", fmt.Sprintf(records, "reservations"), pgx.RowToStructByPos[Record])
	if err != nil {
		return nil, err
	}
	resItems, err := query(ctx, dbs.Inventory, "reservation_items",
		`SELECT reservation_id::text, product_id::text, quantity FROM reservation_items ORDER BY reservation_id, product_id`, rowToOwned)
	if err != nil {
		return nil, err
	}
	byReservation := map[string]int{}
	for i, r := range reservations {
		byReservation[r.ID] = i
		s.Reservations = append(s.Reservations, Reservation{Record: r})
	}
	for _, it := range resItems {
		if i, ok := byReservation[it.Owner]; ok {
			s.Reservations[i].Items = append(s.Reservations[i].Items, it.Item)
		}
	}
	if s.Products, err = query(ctx, dbs.Inventory, "products",
		`SELECT id::text, quantity_reserved FROM products ORDER BY id`, pgx.RowToStructByPos[Product]); err != nil {
		return nil, err
	}
	return &s, nil
}

func query[T any](ctx context.Context, q Querier, table, sql string, fn pgx.RowToFunc[T], args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	out, err := pgx.CollectRows(rows, fn)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return out, nil
}

// Audit checks the saga's invariants. Without since it loads a snapshot of everything and checks
// it (see Check); with since it reads only what the orders created since then need, and sums the
// stock totals in the databases (see AuditSince).
func Audit(ctx context.Context, dbs Databases, since time.Time) ([]Violation, error) {
	if !since.IsZero() {
		return AuditSince(ctx, dbs, since, DefaultAuditBatch, true)
	}
	s, err := Load(ctx, dbs)
	if err != nil {
		return nil, err
	}
	return Check(s, since), nil
}

// Check returns every violation of the saga's invariants in s, sorted by order id and rule.
// Orders created before since are left out of the per-order rules; whether records belong to
// a known order, and the stock totals, are always checked over everything.
func Check(s *Snapshot, since time.Time) []Violation {
	orders := map[string]bool{}
	for _, o := range s.Orders {
		orders[o.ID] = true
	}
	vs := checkOrders(s, since)
	known := func(orderID string) bool { return orders[orderID] }
	vs = append(vs, orphans(RuleOrphanPayment, "payment", s.Payments, known)...)
	vs = append(vs, orphans(RuleOrphanReservation, "reservation", records(s.Reservations), known)...)
	vs = append(vs, orphans(RuleOrphanShipment, "shipment", s.Shipments, known)...)
	vs = append(vs, checkStock(s)...)
	sortViolations(vs)
	return vs
}

func sortViolations(vs []Violation) {
	slices.SortStableFunc(vs, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(a.OrderID, b.OrderID), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Detail, b.Detail))
	})
}

// checkOrders checks the per-order rules for the orders of s created at or after since, against
// the payments, reservations and shipments of s.
func checkOrders(s *Snapshot, since time.Time) []Violation {
	var vs []Violation
	add := func(orderID, rule, format string, args ...any) {
		vs = append(vs, Violation{OrderID: orderID, Rule: rule, Detail: fmt.Sprintf(format, args...)})
	}
	payments := groupByOrder(s.Payments, func(r Record) string { return r.OrderID })
	shipments := groupByOrder(s.Shipments, func(r Record) string { return r.OrderID })
	reservations := groupByOrder(s.Reservations, func(r Reservation) string { return r.OrderID })

	for _, o := range s.Orders {
		if o.CreatedAt.Before(since) {
			continue
		}
		pays, ships, ress := payments[o.ID], shipments[o.ID], reservations[o.ID]
		if len(pays) > 1 {
			add(o.ID, RuleDuplicatePayment, "%d payments: %s", len(pays), recordList(pays))
		}
		if len(ress) > 1 {
			add(o.ID, RuleDuplicateReservation, "%d reservations: %s", len(ress), recordList(records(ress)))
		}
		if len(ships) > 1 {
			add(o.ID, RuleDuplicateShipment, "%d shipments: %s", len(ships), recordList(ships))
		}
		switch o.Status {
		case statusConfirmed:
			if !hasStatus(pays, "APPROVED") {
				add(o.ID, RuleConfirmedWithoutPayment, "payment: %s", recordList(pays))
			}
			if !hasStatus(records(ress), statusReserved) {
				add(o.ID, RuleConfirmedWithoutReservation, "reservation: %s", recordList(records(ress)))
			}
			if !hasStatus(ships, "SCHEDULED") {
				add(o.ID, RuleConfirmedWithoutShipment, "shipment: %s", recordList(ships))
			}
		case statusCancelled:
			// However it was cancelled (compensation, or its saga deadline), a cancelled order
			// holds nothing: no approved payment (REVERSED, a CANCELLED tombstone, or a DECLINED
			// one overtaken by the deadline), no reservation, no live shipment.
			for _, p := range pays {
				if p.Status == "APPROVED" {
					add(o.ID, RuleCancelledPaymentNotReversed, "payment %s is %s", p.ID, p.Status)
				}
			}
			for _, r := range ress {
				if r.Status == statusReserved {
					add(o.ID, RuleCancelledHoldsStock, "reservation %s is %s", r.ID, r.Status)
				}
			}
			for _, sh := range ships {
				if sh.Status == "SCHEDULED" {
					add(o.ID, RuleCancelledShipmentLive, "shipment %s is %s", sh.ID, sh.Status)
				}
			}
		case statusPaymentFailed:
			if !hasStatus(pays, "DECLINED") {
				add(o.ID, RulePaymentFailedWithoutDeclined, "payment: %s", recordList(pays))
			}
			if len(ress) > 0 {
				add(o.ID, RulePaymentFailedHasReservation, "reservation: %s", recordList(records(ress)))
			}
		default:
			add(o.ID, RuleNotTerminal, "status %s", o.Status)
		}
	}
	return vs
}

// orphans reports the records whose order is not known.
func orphans(rule, what string, rs []Record, known func(orderID string) bool) []Violation {
	var vs []Violation
	for _, r := range rs {
		if !known(r.OrderID) {
			vs = append(vs, Violation{OrderID: r.OrderID, Rule: rule, Detail: fmt.Sprintf("%s %s belongs to no known order", what, r.ID)})
		}
	}
	return vs
}

// checkStock compares each product's reserved stock with what the reservations hold and with
// what the confirmed orders bought: all three must agree.
func checkStock(s *Snapshot) []Violation {
	reserved := map[string]int64{}
	for _, p := range s.Products {
		reserved[p.ID] = p.Reserved
	}
	held := map[string]int64{}
	for _, r := range s.Reservations {
		if r.Status != statusReserved {
			continue
		}
		for _, it := range r.Items {
			held[it.ProductID] += it.Quantity
		}
	}
	sold := map[string]int64{}
	for _, o := range s.Orders {
		if o.Status != statusConfirmed {
			continue
		}
		for _, it := range o.Items {
			sold[it.ProductID] += it.Quantity
		}
	}
	return stockViolations(reserved, held, sold)
}

// stockViolations compares, per product, the stock inventory has reserved (every product it
// knows is a key), what RESERVED reservations hold and what CONFIRMED orders bought.
func stockViolations(reserved, held, sold map[string]int64) []Violation {
	ids := map[string]bool{}
	for _, m := range []map[string]int64{reserved, held, sold} {
		for id := range m {
			ids[id] = true
		}
	}
	var vs []Violation
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		name := "product " + id
		if _, known := reserved[id]; !known {
			name += " (not in inventory)"
		}
		if reserved[id] != held[id] {
			vs = append(vs, Violation{Rule: RuleReservedStockMismatch,
				Detail: fmt.Sprintf("%s: quantity_reserved %d, RESERVED reservations hold %d", name, reserved[id], held[id])})
		}
		if reserved[id] != sold[id] {
			vs = append(vs, Violation{Rule: RuleConfirmedStockMismatch,
				Detail: fmt.Sprintf("%s: quantity_reserved %d, CONFIRMED orders hold %d", name, reserved[id], sold[id])})
		}
	}
	return vs
}

// CheckDeadLetters reports every non-empty dead-letter queue, unless they hold no more than
// allow messages in all (dead letters a test injected on purpose, say).
func CheckDeadLetters(depths []QueueDepth, allow int) []Violation {
	total := 0
	for _, q := range depths {
		total += q.Depth
	}
	if total <= allow {
		return nil
	}
	var vs []Violation
	for _, q := range depths {
		if q.Depth > 0 {
			vs = append(vs, Violation{Rule: RuleDeadLetters, Detail: fmt.Sprintf("%s holds %d dead letter(s)", q.Queue, q.Depth)})
		}
	}
	return vs
}

func groupByOrder[T any](items []T, orderID func(T) string) map[string][]T {
	m := map[string][]T{}
	for _, it := range items {
		m[orderID(it)] = append(m[orderID(it)], it)
	}
	return m
}

func records(rs []Reservation) []Record {
	out := make([]Record, len(rs))
	for i, r := range rs {
		out[i] = r.Record
	}
	return out
}

func hasStatus(rs []Record, status string) bool {
	return slices.ContainsFunc(rs, func(r Record) bool { return r.Status == status })
}

func recordList(rs []Record) string {
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.ID + " " + r.Status
	}
	return strings.Join(parts, ", ")
}
