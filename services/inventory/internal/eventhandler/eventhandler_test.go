package eventhandler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

type env struct {
	pool      *pgxpool.Pool
	repo      *postgres.Repository
	approved  broker.Handler
	released  broker.Handler
	cancelled broker.Handler
}

// newEnv returns inventory-service's handlers on a fresh database. Their relay is not running:
// what they publish stays in the outbox table, where the tests read it.
func newEnv(t *testing.T) *env {
	t.Helper()
	pool := testenv.Postgres(t, "inventory", postgres.Migrations...)
	return newEnvOn(t, pool, outbox.NewRelay(pool, nil, testenv.Logger(t)))
}

// newEnvOn returns inventory-service's handlers on pool, handing what they commit to relay.
func newEnvOn(t *testing.T, pool *pgxpool.Pool, relay *outbox.Relay) *env {
	t.Helper()
	log := testenv.Logger(t)
	reg := rules.New[eventhandler.Store](catalog.Inventory)
	eventhandler.Register(reg, log)
	handlers, err := unitofwork.New(reg, pool, relay, log, postgres.NewStore).Handlers()
	if err != nil {
		t.Fatalf("handlers: %v", err)
	}
	of := func(routingKey string) broker.Handler {
		h, ok := handlers[catalog.Subscription{Consumer: catalog.Inventory, RoutingKey: routingKey}]
		if !ok {
			t.Fatalf("no handler for %s", routingKey)
		}
		return h
	}
	return &env{pool: pool, repo: postgres.NewRepository(pool),
		approved: of(catalog.PaymentApproved), released: of(catalog.ShippingFailed), cancelled: of(catalog.OrderCancelled)}
}

// rejected checks that err refuses exactly the deliveries at indexes of the batch.
func rejected(t *testing.T, err error, indexes ...int) {
	t.Helper()
	var rej broker.Rejected
	if !errors.As(err, &rej) {
		t.Fatalf("error = %v, want deliveries %v rejected", err, indexes)
	}
	if len(rej) != len(indexes) {
		t.Fatalf("rejected %v, want deliveries %v", rej, indexes)
	}
	for _, i := range indexes {
		if rej[i] == nil {
			t.Fatalf("rejected %v, want delivery %d among them", rej, i)
		}
	}
}

// product creates a product with total stock and returns its id.
func (e *env) product(t *testing.T, total int64) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := e.repo.SetStock(context.Background(), id, total); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	return id
}

func (e *env) stock(t *testing.T, id string) (total, reserved int64) {
	t.Helper()
	p, err := e.repo.Product(context.Background(), id)
	if err != nil {
		t.Fatalf("Product: %v", err)
	}
	return p.Total(), p.Reserved()
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

type outboxRow struct {
	routingKey string
	payload    proto.Message
}

// outbox returns the outbox rows in insertion order, bodies decoded by routing key.
func (e *env) outbox(t *testing.T) []outboxRow {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT routing_key, message_type, body FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("select outbox: %v", err)
	}
	var out []outboxRow
	var key, typ string
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&key, &typ, &body}, func() error {
		var m proto.Message
		switch key {
		case catalog.InventoryReserved:
			m = &inventoryv1.InventoryReserved{}
		case catalog.InventoryFailed:
			m = &inventoryv1.InventoryFailed{}
		case catalog.InventoryReleased:
			m = &inventoryv1.InventoryReleased{}
		default:
			return fmt.Errorf("unexpected routing key %s", key)
		}
		if want := string(m.ProtoReflect().Descriptor().FullName()); typ != want {
			return fmt.Errorf("message_type %s, want %s", typ, want)
		}
		if err := proto.Unmarshal(body, m); err != nil {
			return err
		}
		out = append(out, outboxRow{key, m})
		return nil
	})
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

func line(productID string, quantity int32) *orderv1.OrderLine {
	return &orderv1.OrderLine{ProductId: productID, Quantity: quantity, UnitPriceMinor: 4990}
}

func approved(items ...*orderv1.OrderLine) *paymentv1.PaymentApproved {
	return &paymentv1.PaymentApproved{
		EventId:     uuid.NewString(),
		OrderId:     uuid.NewString(),
		OccurTime:   timestamppb.Now(),
		PaymentId:   uuid.NewString(),
		AmountMinor: 4990,
		Items:       items,
		CountryCode: "DE",
	}
}

func delivery(t testing.TB, ev rules.Message) amqp.Delivery {
	t.Helper()
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return amqp.Delivery{
		Type:          string(ev.ProtoReflect().Descriptor().FullName()),
		MessageId:     ev.GetEventId(),
		CorrelationId: ev.GetOrderId(),
		ContentType:   broker.ContentTypeProtobuf,
		Body:          body,
	}
}

func deliveries(t testing.TB, evs ...rules.Message) []amqp.Delivery {
	t.Helper()
	ds := make([]amqp.Delivery, len(evs))
	for i, ev := range evs {
		ds[i] = delivery(t, ev)
	}
	return ds
}

func handle(t *testing.T, h broker.Handler, evs ...rules.Message) {
	t.Helper()
	if err := h(context.Background(), deliveries(t, evs...)); err != nil {
		t.Fatalf("handler: %v", err)
	}
}

func TestPaymentApprovedReserves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keyboard, mouse := e.product(t, 10), e.product(t, 5)
	ev := approved(line(keyboard, 2), line(mouse, 1), line(keyboard, 1))

	handle(t, e.approved, ev)

	if total, reserved := e.stock(t, keyboard); total != 10 || reserved != 3 {
		t.Errorf("keyboard total, reserved = %d, %d, want 10, 3", total, reserved)
	}
	if _, reserved := e.stock(t, mouse); reserved != 1 {
		t.Errorf("mouse reserved = %d, want 1", reserved)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RESERVED'`, ev.OrderId); n != 1 {
		t.Errorf("reservations = %d, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM reservation_items i JOIN reservations r ON r.id = i.reservation_id
		WHERE r.order_id = $1 AND ((i.product_id = $2 AND i.quantity = 3) OR (i.product_id = $3 AND i.quantity = 1))`,
		ev.OrderId, keyboard, mouse); n != 2 {
		t.Errorf("merged reservation items = %d, want 2", n)
	}
	rows := e.outbox(t)
	if len(rows) != 1 || rows[0].routingKey != catalog.InventoryReserved {
		t.Fatalf("outbox = %v, want one inventory.reserved", rows)
	}
	got := rows[0].payload.(*inventoryv1.InventoryReserved)
	if got.OrderId != ev.OrderId || got.CountryCode != "DE" || len(got.Items) != 3 || got.ReservationId == "" ||
		uuid.Validate(got.EventId) != nil || got.OccurTime == nil {
		t.Errorf("inventory.reserved = %v", got)
	}
	if !proto.Equal(got.Items[0], ev.Items[0]) {
		t.Errorf("items[0] = %v, want %v", got.Items[0], ev.Items[0])
	}
}

func TestPaymentApprovedFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keyboard, mouse := e.product(t, 10), e.product(t, 1)
	unknown := uuid.NewString()
	tests := []struct {
		name   string
		ev     *paymentv1.PaymentApproved
		reason string
	}{
		{"insufficient", approved(line(mouse, 3)), fmt.Sprintf("insufficient stock for product %s: requested 3, available 1", mouse)},
		{"unknown", approved(line(unknown, 1)), "unknown product " + unknown},
		{"one short item holds nothing", approved(line(keyboard, 3), line(mouse, 2)),
			fmt.Sprintf("insufficient stock for product %s: requested 2, available 1", mouse)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.outbox(t))
			handle(t, e.approved, tt.ev)
			if _, reserved := e.stock(t, keyboard); reserved != 0 {
				t.Errorf("keyboard reserved = %d, want 0", reserved)
			}
			if _, reserved := e.stock(t, mouse); reserved != 0 {
				t.Errorf("mouse reserved = %d, want 0", reserved)
			}
			if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1`, tt.ev.OrderId); n != 0 {
				t.Errorf("reservations = %d, want 0", n)
			}
			rows := e.outbox(t)[before:]
			if len(rows) != 1 || rows[0].routingKey != catalog.InventoryFailed {
				t.Fatalf("outbox = %v, want one inventory.failed", rows)
			}
			got := rows[0].payload.(*inventoryv1.InventoryFailed)
			if got.OrderId != tt.ev.OrderId || got.Reason != tt.reason {
				t.Errorf("inventory.failed = %v, want reason %q", got, tt.reason)
			}
		})
	}
	if n := e.count(t, `SELECT count(*) FROM reservation_items`); n != 0 {
		t.Errorf("reservation items = %d, want 0", n)
	}
}

func TestPaymentApprovedBatchSeesEarlierOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mouse := e.product(t, 3)
	first, second, third := approved(line(mouse, 2)), approved(line(mouse, 2)), approved(line(mouse, 1))

	handle(t, e.approved, first, second, third)

	if _, reserved := e.stock(t, mouse); reserved != 3 {
		t.Errorf("reserved = %d, want 3", reserved)
	}
	rows := e.outbox(t)
	want := []string{catalog.InventoryReserved, catalog.InventoryFailed, catalog.InventoryReserved}
	if len(rows) != len(want) {
		t.Fatalf("outbox has %d rows, want %d", len(rows), len(want))
	}
	for i, key := range want {
		if rows[i].routingKey != key {
			t.Errorf("outbox[%d] = %s, want %s", i, rows[i].routingKey, key)
		}
	}
}

func TestPaymentApprovedDuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mouse := e.product(t, 10)
	ev := approved(line(mouse, 2))

	// The same event twice in one batch, then redelivered in another (once spelled in capitals);
	// then a second event for the same order.
	handle(t, e.approved, ev, ev)
	handle(t, e.approved, ev)
	upper := proto.Clone(ev).(*paymentv1.PaymentApproved)
	upper.EventId = strings.ToUpper(ev.EventId)
	handle(t, e.approved, upper)
	again := proto.Clone(ev).(*paymentv1.PaymentApproved)
	again.EventId = uuid.NewString()
	handle(t, e.approved, again)

	if _, reserved := e.stock(t, mouse); reserved != 2 {
		t.Errorf("reserved = %d, want 2", reserved)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations`); n != 1 {
		t.Errorf("reservations = %d, want 1", n)
	}
	if rows := e.outbox(t); len(rows) != 1 {
		t.Errorf("outbox has %d rows, want 1", len(rows))
	}
}

func TestPaymentApprovedInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mouse := e.product(t, 10)
	tests := []struct {
		name string
		d    amqp.Delivery
	}{
		{"no items", delivery(t, approved())},
		{"bad product id", delivery(t, approved(line("mouse", 1)))},
		{"zero quantity", delivery(t, approved(line(mouse, 0)))},
		{"wrong type", func() amqp.Delivery {
			d := delivery(t, approved(line(mouse, 1)))
			d.Type = "payment.v1.PaymentFailed"
			return d
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Refused on its own, while the good event of the same batch takes effect.
			good := approved(line(mouse, 1))
			rejected(t, e.approved(context.Background(), []amqp.Delivery{delivery(t, good), tt.d}), 1)
			if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1`, good.OrderId); n != 1 {
				t.Errorf("the good event's order has %d reservations, want 1", n)
			}
		})
	}
	// Only the good events reserved anything.
	if _, reserved := e.stock(t, mouse); reserved != int64(len(tests)) {
		t.Errorf("reserved = %d, want %d", reserved, len(tests))
	}
}

func TestShippingFailedReleases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keyboard, mouse := e.product(t, 10), e.product(t, 5)
	ev := approved(line(keyboard, 2), line(mouse, 1))
	other := approved(line(keyboard, 1))
	handle(t, e.approved, ev, other)

	failed := &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: ev.OrderId, OccurTime: timestamppb.Now(), Reason: "carrier does not deliver to AQ"}
	handle(t, e.released, failed)
	// Redelivered, and a second failure for the same order: nothing more happens.
	handle(t, e.released, failed)
	handle(t, e.released, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: ev.OrderId, OccurTime: timestamppb.Now()})
	// An order without a reservation: nothing happens.
	handle(t, e.released, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: uuid.NewString(), OccurTime: timestamppb.Now()})

	if _, reserved := e.stock(t, keyboard); reserved != 1 {
		t.Errorf("keyboard reserved = %d, want 1 (the other order's)", reserved)
	}
	if _, reserved := e.stock(t, mouse); reserved != 0 {
		t.Errorf("mouse reserved = %d, want 0", reserved)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RELEASED'`, ev.OrderId); n != 1 {
		t.Errorf("released reservations = %d, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'RESERVED'`, other.OrderId); n != 1 {
		t.Errorf("other order's reservation not kept")
	}
	rows := e.outbox(t)
	if len(rows) != 3 || rows[2].routingKey != catalog.InventoryReleased {
		t.Fatalf("outbox = %v, want 2 reserved and 1 released", rows)
	}
	reserved := rows[0].payload.(*inventoryv1.InventoryReserved)
	got := rows[2].payload.(*inventoryv1.InventoryReleased)
	if got.OrderId != ev.OrderId || got.ReservationId != reserved.ReservationId || !strings.Contains(got.Reason, "AQ") {
		t.Errorf("inventory.released = %v", got)
	}
}

// TestPaymentApprovedConcurrent races many batches for one product: row locks must let exactly
// the stock through, whatever the interleaving.
func TestPaymentApprovedConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	monitor := e.product(t, 10)
	const orders, workers, batchSize = 50, 5, 4

	ds := make(chan amqp.Delivery, orders)
	for range orders {
		ds <- delivery(t, approved(line(monitor, 1)))
	}
	close(ds)
	var wg sync.WaitGroup
	errs := make(chan error, workers*orders)
	for w := range workers {
		// Each worker a replica: a replica runs one unit of work at a time.
		r := e
		if w > 0 {
			r = newEnvOn(t, e.pool, outbox.NewRelay(e.pool, nil, testenv.Logger(t)))
		}
		wg.Go(func() {
			var batch []amqp.Delivery
			flush := func() {
				if len(batch) > 0 {
					if err := r.approved(context.Background(), batch); err != nil {
						errs <- err
					}
					batch = nil
				}
			}
			for d := range ds {
				if batch = append(batch, d); len(batch) == batchSize {
					flush()
				}
			}
			flush()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handler: %v", err)
	}

	if total, reserved := e.stock(t, monitor); total != 10 || reserved != 10 {
		t.Errorf("total, reserved = %d, %d, want 10, 10", total, reserved)
	}
	if n := e.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`); n != 10 {
		t.Errorf("reservations = %d, want 10", n)
	}
	counts := map[string]int{}
	for _, row := range e.outbox(t) {
		counts[row.routingKey]++
	}
	if counts[catalog.InventoryReserved] != 10 || counts[catalog.InventoryFailed] != 40 {
		t.Errorf("outbox = %v, want 10 reserved and 40 failed", counts)
	}
}

func orderCancelled(orderID string) *orderv1.OrderCancelled {
	return &orderv1.OrderCancelled{EventId: uuid.NewString(), OrderId: orderID, OccurTime: timestamppb.Now(),
		Reason: "saga deadline passed", StuckStatus: "PAYMENT_APPROVED"}
}

// TestOrderCancelled covers a cancellation before and after the reservation, followed by every
// event inventory consumes arriving late and repeated: nothing is held at the end, and only a
// held reservation is announced released.
func TestOrderCancelled(t *testing.T) {
	t.Parallel()
	for _, reservedFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("reserved first %v", reservedFirst), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			keyboard := e.product(t, 10)
			ev := approved(line(keyboard, 2))
			if reservedFirst {
				handle(t, e.approved, ev)
			}
			cancelled := orderCancelled(ev.OrderId)
			handle(t, e.cancelled, cancelled, cancelled)
			handle(t, e.approved, ev)
			late := approved(line(keyboard, 3))
			late.OrderId = ev.OrderId
			handle(t, e.approved, late)
			handle(t, e.released, &shippingv1.ShippingFailed{EventId: uuid.NewString(), OrderId: ev.OrderId, OccurTime: timestamppb.Now()})
			handle(t, e.cancelled, cancelled)
			handle(t, e.cancelled, orderCancelled(ev.OrderId))

			if _, reserved := e.stock(t, keyboard); reserved != 0 {
				t.Errorf("keyboard reserved = %d, want 0", reserved)
			}
			want := "CANCELLED"
			if reservedFirst {
				want = "RELEASED"
			}
			if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = $2`, ev.OrderId, want); n != 1 {
				t.Errorf("%s reservations = %d, want 1", want, n)
			}
			var keys []string
			for _, row := range e.outbox(t) {
				keys = append(keys, row.routingKey)
			}
			wantKeys := "[]"
			if reservedFirst {
				wantKeys = "[inventory.reserved inventory.released]"
			}
			if fmt.Sprint(keys) != wantKeys {
				t.Errorf("outbox %v, want %s", keys, wantKeys)
			}
			if reservedFirst {
				rel := e.outbox(t)[1].payload.(*inventoryv1.InventoryReleased)
				if rel.Reason != "order cancelled: saga deadline passed" {
					t.Errorf("inventory.released reason %q", rel.Reason)
				}
			}
		})
	}
}

// TestOrderCancelledRacesTheReservation runs a cancellation and the order's reservation at the
// same time, many times, on one replica (they may share a unit of work) and on two (the
// database orders them): whichever wins, nothing stays held and stock adds up.
func TestOrderCancelledRacesTheReservation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	replicas := []*env{e, newEnvOn(t, e.pool, outbox.NewRelay(e.pool, nil, testenv.Logger(t)))}
	keyboard := e.product(t, 1000)
	for i := range 20 {
		ev := approved(line(keyboard, 1))
		errs := make(chan error, 2)
		go func() { errs <- e.approved(context.Background(), deliveries(t, ev)) }()
		go func() {
			errs <- replicas[i%2].cancelled(context.Background(), deliveries(t, orderCancelled(ev.OrderId)))
		}()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status IN ('CANCELLED', 'RELEASED')`, ev.OrderId); n != 1 {
			t.Fatalf("order %s: no CANCELLED or RELEASED reservation", ev.OrderId)
		}
	}
	if _, reserved := e.stock(t, keyboard); reserved != 0 {
		t.Errorf("keyboard reserved = %d, want 0", reserved)
	}
}
