package ops

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/money"
)

// ErrOrderNotFound is returned by LookUp when no database and no dead-letter queue knows the order.
var ErrOrderNotFound = errors.New("order not found")

// OrderView is what the saga's databases and dead-letter queues hold about one order.
type OrderView struct {
	OrderID     string            `json:"order_id"`
	Order       *OrderRow         `json:"order"` // nil when the order database does not have it
	History     []StatusChange    `json:"history"`
	Payment     *PaymentRow       `json:"payment"`
	Reservation *ReservationRow   `json:"reservation"`
	Shipment    *ShipmentRow      `json:"shipment"`
	Outbox      []OutboxRow       `json:"outbox"` // events of the order not yet published, in all four databases
	DeadLetters []OrderDeadLetter `json:"dead_letters"`
	// DeadLetterScan says how much of the dead-letter queues was looked at (nil: not at all).
	DeadLetterScan *DeadLetterScan `json:"dead_letter_scan,omitempty"`
	// TraceID is the W3C trace id of the order's saga, from a dead letter's or an outbox row's
	// traceparent; empty when none carries one.
	TraceID string `json:"trace_id"`
}

// OrderRow is the order as order-service stores it.
type OrderRow struct {
	ID            string      `json:"id"`
	CustomerID    string      `json:"customer_id"`
	PaymentMethod string      `json:"payment_method"`
	Status        string      `json:"status"`
	TotalMinor    int64       `json:"total_minor"`
	Total         string      `json:"total"`
	CountryCode   string      `json:"country_code,omitempty"`
	FailureReason string      `json:"failure_reason,omitempty"`
	TrackingCode  string      `json:"tracking_code,omitempty"`
	RequestID     string      `json:"request_id,omitempty"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
	Items         []OrderLine `json:"items"`
}

// OrderLine is one item of an order.
type OrderLine struct {
	Line           int    `json:"line"`
	ProductID      string `json:"product_id"`
	Quantity       int64  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
	UnitPrice      string `json:"unit_price"`
}

// StatusChange is one entry of an order's status history.
type StatusChange struct {
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// PaymentRow is the order's payment.
type PaymentRow struct {
	ID          string    `json:"id"`
	Method      string    `json:"method"`
	AmountMinor int64     `json:"amount_minor"`
	Amount      string    `json:"amount"`
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ReservationRow is the order's stock reservation.
type ReservationRow struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Items     []Item    `json:"items"`
}

// ShipmentRow is the order's shipment.
type ShipmentRow struct {
	ID                string     `json:"id"`
	Status            string     `json:"status"`
	TrackingCode      string     `json:"tracking_code,omitempty"`
	FreightMinor      int64      `json:"freight_minor"`
	Freight           string     `json:"freight"`
	CountryCode       string     `json:"country_code"`
	EstimatedDelivery *time.Time `json:"estimated_delivery,omitempty"`
	Reason            string     `json:"reason,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
}

// OutboxRow is an event of the order still waiting in a service's outbox.
type OutboxRow struct {
	Service     string    `json:"service"`
	ID          int64     `json:"id"`
	EventID     string    `json:"event_id"`
	Exchange    string    `json:"exchange"`
	RoutingKey  string    `json:"routing_key"`
	MessageType string    `json:"message_type"`
	CreatedAt   time.Time `json:"created_at"`
	DueAt       time.Time `json:"due_at"` // when the relay's poll takes it, should no hand-over publish it first
	Traceparent string    `json:"traceparent,omitempty"`
}

// OrderDeadLetter is a dead letter of the order and the dead-letter queue that holds it.
type OrderDeadLetter struct {
	Queue string `json:"queue"`
	DeadLetter
}

// DeadLetterScan says how many dead letters were looked at for an order, and how many were not
// because a queue held more than the limit.
type DeadLetterScan struct {
	Queues  int `json:"queues"`
	Scanned int `json:"scanned"`
	Skipped int `json:"skipped"`
}

// LoadOrder reads what the four databases hold about orderID: the order with its items and
// history, its payment, reservation and shipment, and its events still in an outbox.
func LoadOrder(ctx context.Context, dbs Databases, orderID string) (*OrderView, error) {
	v := &OrderView{OrderID: orderID, History: []StatusChange{}, Outbox: []OutboxRow{}, DeadLetters: []OrderDeadLetter{}}
	orders, err := query(ctx, dbs.Order, "orders", `
		SELECT id::text, customer_id::text, payment_method, status, total_minor, coalesce(country_code, ''),
			coalesce(failure_reason, ''), coalesce(tracking_code, ''), coalesce(request_id, ''), created_at, updated_at
		FROM orders WHERE id = $1`, func(row pgx.CollectableRow) (OrderRow, error) {
		var o OrderRow
		err := row.Scan(&o.ID, &o.CustomerID, &o.PaymentMethod, &o.Status, &o.TotalMinor, &o.CountryCode,
			&o.FailureReason, &o.TrackingCode, &o.RequestID, &o.CreatedAt, &o.UpdatedAt)
		o.Total = money.Format(o.TotalMinor)
		return o, err
	}, orderID)
	if err != nil {
		return nil, err
	}
	if len(orders) == 1 {
		v.Order = &orders[0]
		if v.Order.Items, err = query(ctx, dbs.Order, "order_items",
			`SELECT line, product_id::text, quantity, unit_price_minor FROM order_items WHERE order_id = $1 ORDER BY line`,
			func(row pgx.CollectableRow) (OrderLine, error) {
				var l OrderLine
				err := row.Scan(&l.Line, &l.ProductID, &l.Quantity, &l.UnitPriceMinor)
				l.UnitPrice = money.Format(l.UnitPriceMinor)
				return l, err
			}, orderID); err != nil {
			return nil, err
		}
	}
	if v.History, err = query(ctx, dbs.Order, "order_status_history",
		`SELECT status, reason, changed_at FROM order_status_history WHERE order_id = $1 ORDER BY id`,
		pgx.RowToStructByPos[StatusChange], orderID); err != nil {
		return nil, err
	}

	payments, err := query(ctx, dbs.Payment, "payments", `
		SELECT id::text, method, amount_minor, status, coalesce(reason, ''), created_at, updated_at
		FROM payments WHERE order_id = $1 ORDER BY created_at, id`, func(row pgx.CollectableRow) (PaymentRow, error) {
		var p PaymentRow
		err := row.Scan(&p.ID, &p.Method, &p.AmountMinor, &p.Status, &p.Reason, &p.CreatedAt, &p.UpdatedAt)
		p.Amount = money.Format(p.AmountMinor)
		return p, err
	}, orderID)
	if err != nil {
		return nil, err
	}
	if len(payments) > 0 {
		v.Payment = &payments[0] // order_id is unique: at most one
	}

	reservations, err := query(ctx, dbs.Inventory, "reservations",
		`SELECT id::text, status, created_at, updated_at FROM reservations WHERE order_id = $1 ORDER BY created_at, id`,
		func(row pgx.CollectableRow) (ReservationRow, error) {
			var r ReservationRow
			err := row.Scan(&r.ID, &r.Status, &r.CreatedAt, &r.UpdatedAt)
			return r, err
		}, orderID)
	if err != nil {
		return nil, err
	}
	if len(reservations) > 0 {
		v.Reservation = &reservations[0]
		if v.Reservation.Items, err = query(ctx, dbs.Inventory, "reservation_items",
			`SELECT product_id::text, quantity FROM reservation_items WHERE reservation_id = $1 ORDER BY product_id`,
			pgx.RowToStructByPos[Item], v.Reservation.ID); err != nil {
			return nil, err
		}
	}

	shipments, err := query(ctx, dbs.Shipping, "shipments", `
		SELECT id::text, status, coalesce(tracking_code, ''), freight_minor, country_code, estimated_delivery,
			coalesce(reason, ''), created_at
		FROM shipments WHERE order_id = $1 ORDER BY created_at, id`, func(row pgx.CollectableRow) (ShipmentRow, error) {
		var s ShipmentRow
		err := row.Scan(&s.ID, &s.Status, &s.TrackingCode, &s.FreightMinor, &s.CountryCode, &s.EstimatedDelivery,
			&s.Reason, &s.CreatedAt)
		s.Freight = money.Format(s.FreightMinor)
		return s, err
	}, orderID)
	if err != nil {
		return nil, err
	}
	if len(shipments) > 0 {
		v.Shipment = &shipments[0]
	}

	for _, db := range []struct {
		service string
		q       Querier
	}{{"order", dbs.Order}, {"payment", dbs.Payment}, {"inventory", dbs.Inventory}, {"shipping", dbs.Shipping}} {
		rows, err := pendingOutbox(ctx, db.q, db.service, orderID)
		if err != nil {
			return nil, err
		}
		v.Outbox = append(v.Outbox, rows...)
	}
	v.setTraceID()
	return v, nil
}

// pendingOutbox returns the order's events still in a service's outbox. The traceparent comes
// from a traceparent column or a jsonb headers column, whichever the outbox table has.
func pendingOutbox(ctx context.Context, q Querier, service, orderID string) ([]OutboxRow, error) {
	cols, err := query(ctx, q, service+" outbox",
		`SELECT column_name::text, data_type::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'outbox' AND column_name IN ('traceparent', 'headers')`,
		pgx.RowToStructByPos[struct{ Name, Type string }])
	if err != nil {
		return nil, err
	}
	traceparent := "''"
	for _, c := range cols {
		switch {
		case c.Name == "traceparent":
			traceparent = "coalesce(traceparent::text, '')"
		case c.Name == "headers" && c.Type == "jsonb" && traceparent == "''":
			traceparent = "coalesce(headers->>'traceparent', '')"
		}
	}
	return query(ctx, q, service+" outbox", `
		SELECT id, event_id::text, exchange, routing_key, message_type, created_at, publish_after, `+traceparent+`
		FROM outbox WHERE correlation_id = $1 ORDER BY id`, func(row pgx.CollectableRow) (OutboxRow, error) {
		r := OutboxRow{Service: service}
		err := row.Scan(&r.ID, &r.EventID, &r.Exchange, &r.RoutingKey, &r.MessageType, &r.CreatedAt, &r.DueAt, &r.Traceparent)
		return r, err
	}, orderID)
}

// FindDeadLetters peeks every non-empty dead-letter queue, looking at up to limit messages of
// each, and adds those whose correlation id is the order's to v. Nothing is removed.
func FindDeadLetters(ctx context.Context, conn Channeler, v *OrderView, limit int) error {
	depths, err := DeadLetterQueues(ctx, conn)
	if err != nil {
		return err
	}
	scan := &DeadLetterScan{Queues: len(depths)}
	for _, q := range depths {
		if q.Depth == 0 {
			continue
		}
		n := min(q.Depth, limit)
		letters, err := Peek(ctx, conn, q.Queue, n)
		if err != nil {
			return err
		}
		scan.Scanned += len(letters)
		scan.Skipped += q.Depth - len(letters)
		for _, dl := range letters {
			if dl.CorrelationID == v.OrderID {
				v.DeadLetters = append(v.DeadLetters, OrderDeadLetter{Queue: q.Queue, DeadLetter: dl})
			}
		}
	}
	v.DeadLetterScan = scan
	v.setTraceID()
	return nil
}

// Found reports whether anything at all knows the order.
func (v *OrderView) Found() bool {
	return v.Order != nil || len(v.History) > 0 || v.Payment != nil || v.Reservation != nil || v.Shipment != nil ||
		len(v.Outbox) > 0 || len(v.DeadLetters) > 0
}

func (v *OrderView) setTraceID() {
	v.TraceID = ""
	for _, dl := range v.DeadLetters {
		if id := TraceID(dl.Traceparent); id != "" {
			v.TraceID = id
			return
		}
	}
	for _, r := range v.Outbox {
		if id := TraceID(r.Traceparent); id != "" {
			v.TraceID = id
			return
		}
	}
}

// TraceID returns the trace id of a W3C traceparent ("00-<trace id>-<span id>-<flags>"), or ""
// when it is not one.
func TraceID(traceparent string) string {
	parts := strings.Split(strings.TrimSpace(traceparent), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		return ""
	}
	id := strings.ToLower(parts[1])
	if strings.Trim(id, "0123456789abcdef") != "" || strings.Trim(id, "0") == "" {
		return ""
	}
	return id
}
