package grpcapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	shippingv1 "github.com/ordersaga/ordersaga/gen/shipping/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/rules"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/testenv"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

type env struct {
	pool   *pgxpool.Pool
	svc    *grpcapi.Server
	repo   *postgres.Repository
	saga   map[catalog.Subscription]broker.Handler // order-service's event handlers
	client orderv1.OrderServiceClient
	conn   *grpc.ClientConn
	addr   string
}

// start serves the real service on 127.0.0.1:0 over a fresh database. A nil feed means the real
// one; poll overrides the safety-net poll when set.
func start(t *testing.T, feed grpcapi.Feed, poll time.Duration) *env {
	t.Helper()
	return startWith(t, feed, poll, nil)
}

// startWith is start with the server changed by configure before it serves.
func startWith(t *testing.T, feed grpcapi.Feed, poll time.Duration, configure func(*grpcapi.Server)) *env {
	t.Helper()
	pool := testenv.Postgres(t, "order_api", postgres.Migrations...)
	log := testenv.Logger(t)
	repo := postgres.NewRepository(pool)
	ctx, cancel := context.WithCancel(context.Background())
	if feed == nil {
		f := postgres.NewStatusFeed(pool, log)
		repo.AfterStatusCommit(f.Announce)
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		feed = grpcapi.FeedOf(f)
	} else {
		t.Cleanup(cancel)
	}
	svc := grpcapi.NewServer(repo, feed, log)
	if poll > 0 {
		svc.PollInterval = poll
	}
	if configure != nil {
		configure(svc)
	}
	srv := server.NewGRPC(log, grpcprom.NewServerMetrics(), health.NewServer(), func(srv *grpc.Server) {
		orderv1.RegisterOrderServiceServer(srv, svc)
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Status changes come from the saga's events, through order-service's handlers; their relay
	// is not running, and they publish nothing.
	reg := rules.New[eventhandler.Store](catalog.Order)
	eventhandler.Register(reg, log)
	saga, err := unitofwork.New(reg, pool, outbox.NewRelay(pool, nil, log), log, repo.Store).Handlers()
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, svc: svc, repo: repo, saga: saga, client: orderv1.NewOrderServiceClient(conn), conn: conn, addr: lis.Addr().String()}
}

func validRequest() *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{
		CustomerId:    uuid.NewString(),
		PaymentMethod: "credit_card",
		Items: []*orderv1.LineItem{
			{ProductId: "00000000-0000-0000-0000-000000000001", Quantity: 2, UnitPrice: "49.90"},
		},
		ShippingAddress: &orderv1.ShippingAddress{City: "Lisbon", CountryCode: "pt"},
	}
}

func TestCreateAndGetOrder(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	ctx := context.Background()
	req := validRequest()
	req.Items = append(req.Items, &orderv1.LineItem{ProductId: "00000000-0000-0000-0000-000000000002", Quantity: 3, UnitPrice: "5.5"})
	resp, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	o := resp.GetOrder()
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING || o.GetTotal() != "116.30" ||
		o.GetShippingAddress().GetCountryCode() != "PT" || o.GetItems()[0].GetUnitPrice() != "49.90" ||
		o.GetItems()[1].GetUnitPrice() != "5.50" || len(o.GetHistory()) != 1 || o.GetCreateTime() == nil {
		t.Errorf("created %v", o)
	}

	got, err := e.client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetOrder().GetOrderId() != o.GetOrderId() || got.GetOrder().GetTotal() != "116.30" ||
		got.GetOrder().GetHistory()[0].GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING ||
		!got.GetOrder().GetCreateTime().AsTime().Equal(o.GetCreateTime().AsTime()) {
		t.Errorf("got %v", got.GetOrder())
	}

	_, err = e.client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown order: %v", err)
	}
	_, err = e.client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: "42"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "order_id") {
		t.Errorf("malformed id: %v", err)
	}
}

func TestCreateOrderIdempotent(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	ctx := context.Background()
	req := validRequest()
	req.RequestId = "checkout-7"
	first, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetOrder().GetOrderId() != first.GetOrder().GetOrderId() || again.GetOrder().GetRequestId() != "checkout-7" {
		t.Errorf("repeat gave %s, want %s", again.GetOrder().GetOrderId(), first.GetOrder().GetOrderId())
	}

	// Another customer's identical key is refused, naming request_id, while keys stay unique
	// across customers (migration 00002, docs/upgrades.md): never the first customer's order.
	other := validRequest()
	other.RequestId = "checkout-7"
	theirs, err := e.client.CreateOrder(ctx, other)
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || !strings.HasPrefix(st.Message(), "request_id: ") {
		t.Errorf("another customer's key: %v %v, want ALREADY_EXISTS naming request_id", theirs, err)
	} else if field, reason := violation(st); field != "request_id" || reason != grpcapi.RequestIDTaken {
		t.Errorf("another customer's key, details: field %q, reason %q", field, reason)
	}

	// The same key with another request is refused, naming request_id.
	changed := proto.Clone(req).(*orderv1.CreateOrderRequest)
	changed.Items[0].Quantity++
	_, err = e.client.CreateOrder(ctx, changed)
	st := status.Convert(err)
	if st.Code() != codes.AlreadyExists || !strings.HasPrefix(st.Message(), "request_id: ") {
		t.Fatalf("same key, other request: %v", err)
	}
	if field, reason := violation(st); field != "request_id" || reason != grpcapi.RequestIDReused {
		t.Errorf("details: field %q, reason %q", field, reason)
	}
}

// violation returns the field a status's BadRequest detail names and its ErrorInfo's reason.
func violation(st *status.Status) (field, reason string) {
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			field = d.GetFieldViolations()[0].GetField()
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		}
	}
	return field, reason
}

// With the database stalled (another connection holds a lock every insert into orders needs),
// CreateOrder returns within its caller's deadline (DEADLINE_EXCEEDED), and without one within
// the server's own bound (UNAVAILABLE), instead of waiting for the database. Once the database
// answers, no order is left half-stored, and a retry with the same request_id gets its order,
// whole, with its order.created on the way and open for the deadline sweep.
func TestCreateOrderBoundedWhenTheDatabaseStalls(t *testing.T) {
	t.Parallel()
	const bound = 3 * time.Second
	e := startWith(t, nil, 0, func(s *grpcapi.Server) { s.CreateTimeout = bound })
	ctx := context.Background()
	lock, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `LOCK TABLE orders IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	withDeadline, withoutDeadline := validRequest(), validRequest()
	withDeadline.RequestId, withoutDeadline.RequestId = "stalled-1", "stalled-2"
	type result struct {
		code    codes.Code
		elapsed time.Duration
	}
	call := func(ctx context.Context, req *orderv1.CreateOrderRequest) chan result {
		out := make(chan result, 1)
		go func() {
			start := time.Now()
			// The handler itself, not a client: a client gives up at its deadline whether or
			// not the server still waits.
			_, err := e.svc.CreateOrder(ctx, req)
			out <- result{status.Code(err), time.Since(start)}
		}()
		return out
	}
	ctx2s, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	first, second := call(ctx2s, withDeadline), call(ctx, withoutDeadline)
	// Held until well past both bounds: a call still waiting for the database would answer
	// only after the lock is gone.
	released := time.AfterFunc(bound+3*time.Second, func() { lock.Rollback(ctx) })
	defer released.Stop()
	for _, tc := range []struct {
		name  string
		ch    chan result
		code  codes.Code
		limit time.Duration
	}{
		{"a 2s deadline", first, codes.DeadlineExceeded, 2 * time.Second},
		{"no deadline", second, codes.Unavailable, bound},
	} {
		r := <-tc.ch
		if r.code != tc.code || r.elapsed > tc.limit+time.Second {
			t.Errorf("with %s: %s after %s, want %s within %s", tc.name, r.code, r.elapsed.Round(time.Millisecond), tc.code, tc.limit)
		}
	}
	released.Stop()
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a batch that outlived its callers would commit by now
	// Every order stored is whole: items, first history entry, order.created, open.
	for _, q := range []string{
		`SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM order_items i WHERE i.order_id = o.id)`,
		`SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM order_status_history h WHERE h.order_id = o.id)`,
		`SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM outbox b WHERE b.correlation_id = o.id::text)`,
		`SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM open_orders p WHERE p.order_id = o.id)`,
	} {
		var n int
		if err := e.pool.QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d, %v", q, n, err)
		}
	}
	for _, req := range []*orderv1.CreateOrderRequest{withDeadline, withoutDeadline} {
		resp, err := e.client.CreateOrder(ctx, req)
		if err != nil {
			t.Fatalf("retry of %s: %v", req.GetRequestId(), err)
		}
		var orders, events int
		if err := e.pool.QueryRow(ctx, `SELECT count(*), (SELECT count(*) FROM outbox WHERE correlation_id = $2 AND routing_key = $3)
			FROM orders WHERE customer_id = $1`, req.GetCustomerId(), resp.GetOrder().GetOrderId(), catalog.OrderCreated).Scan(&orders, &events); err != nil {
			t.Fatal(err)
		}
		if orders != 1 || events != 1 {
			t.Errorf("%s: %d orders, %d order.created for the one answered", req.GetRequestId(), orders, events)
		}
	}
}

func TestCreateOrderValidation(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	for _, tc := range []struct {
		name  string
		edit  func(*orderv1.CreateOrderRequest)
		field string
	}{
		{"customer", func(r *orderv1.CreateOrderRequest) { r.CustomerId = "bob" }, "customer_id"},
		{"no customer", func(r *orderv1.CreateOrderRequest) { r.CustomerId = "" }, "customer_id"},
		{"method", func(r *orderv1.CreateOrderRequest) { r.PaymentMethod = "pix" }, "payment_method"},
		{"no items", func(r *orderv1.CreateOrderRequest) { r.Items = nil }, "items"},
		{"too many items", func(r *orderv1.CreateOrderRequest) {
			for range 100 {
				r.Items = append(r.Items, r.Items[0])
			}
		}, "items"},
		{"product", func(r *orderv1.CreateOrderRequest) { r.Items[0].ProductId = "p1" }, "items[0].product_id"},
		{"quantity", func(r *orderv1.CreateOrderRequest) { r.Items[0].Quantity = 0 }, "items[0].quantity"},
		{"negative quantity", func(r *orderv1.CreateOrderRequest) { r.Items[0].Quantity = -1 }, "items[0].quantity"},
		{"negative price", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "-1.00" }, "items[0].unit_price"},
		{"price decimals", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "1.999" }, "items[0].unit_price"},
		{"price exponent", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "1e2" }, "items[0].unit_price"},
		{"no price", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "" }, "items[0].unit_price"},
		{"country", func(r *orderv1.CreateOrderRequest) { r.ShippingAddress.CountryCode = "Brazil" }, "shipping_address.country_code"},
		{"request id", func(r *orderv1.CreateOrderRequest) { r.RequestId = strings.Repeat("k", 201) }, "request_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			tc.edit(req)
			_, err := e.client.CreateOrder(context.Background(), req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+": ") {
				t.Fatalf("err = %v, want INVALID_ARGUMENT naming %s", err, tc.field)
			}
		})
	}
	_, err := e.client.CreateOrder(context.Background(), &orderv1.CreateOrderRequest{
		CustomerId: uuid.NewString(), PaymentMethod: "debit_card",
		Items: []*orderv1.LineItem{{ProductId: uuid.NewString(), Quantity: 0, UnitPrice: "1"}},
	})
	if st := status.Convert(err); st.Message() != "items[0].quantity: must be greater than 0" {
		t.Errorf("message %q", st.Message())
	}
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	ctx := context.Background()
	customer := uuid.NewString()
	for range 5 {
		req := validRequest()
		req.CustomerId = customer
		if _, err := e.client.CreateOrder(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.CreateOrder(ctx, validRequest()); err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	token := ""
	pages := 0
	for {
		resp, err := e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{CustomerId: customer, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range resp.GetOrders() {
			if o.GetCustomerId() != customer || seen[o.GetOrderId()] {
				t.Errorf("unexpected order %v", o)
			}
			seen[o.GetOrderId()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != 5 || pages != 3 {
		t.Errorf("%d orders in %d pages", len(seen), pages)
	}

	all, err := e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{PageSize: 1000})
	if err != nil || len(all.GetOrders()) != 6 {
		t.Fatalf("clamped page: %v %v", all, err)
	}
	pending, err := e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{Status: orderv1.OrderStatus_ORDER_STATUS_PENDING})
	if err != nil || len(pending.GetOrders()) != 6 {
		t.Fatalf("pending: %v %v", pending, err)
	}
	confirmed, err := e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{Status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED})
	if err != nil || len(confirmed.GetOrders()) != 0 {
		t.Fatalf("confirmed: %v %v", confirmed, err)
	}
	for name, req := range map[string]*orderv1.ListOrdersRequest{
		"page_size":   {PageSize: -1},
		"page_token":  {PageToken: "not-a-token"},
		"customer_id": {CustomerId: "nope"},
		"status":      {Status: 42},
	} {
		_, err := e.client.ListOrders(ctx, req)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), name+": ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// apply delivers the saga event of kind about order id to order-service's handler, as the
// consumer would.
func apply(t *testing.T, e *env, id string, kind order.EventKind) {
	t.Helper()
	eventID := uuid.NewString()
	var key string
	var msg proto.Message
	switch kind {
	case order.PaymentApproved:
		key, msg = catalog.PaymentApproved, &paymentv1.PaymentApproved{EventId: eventID, OrderId: id}
	case order.PaymentFailed:
		key, msg = catalog.PaymentFailed, &paymentv1.PaymentFailed{EventId: eventID, OrderId: id, Reason: "card declined"}
	case order.InventoryReserved:
		key, msg = catalog.InventoryReserved, &inventoryv1.InventoryReserved{EventId: eventID, OrderId: id}
	case order.ShippingScheduled:
		key, msg = catalog.ShippingScheduled, &shippingv1.ShippingScheduled{EventId: eventID, OrderId: id, TrackingCode: "TRK-WATCH001"}
	default:
		t.Fatalf("apply: no event for %s", kind)
	}
	body, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	d := amqp.Delivery{RoutingKey: key, MessageId: eventID, CorrelationId: id,
		Type: string(msg.ProtoReflect().Descriptor().FullName()), Body: body}
	h := e.saga[catalog.Subscription{Consumer: catalog.Order, RoutingKey: key}]
	if err := h(context.Background(), []amqp.Delivery{d}); err != nil {
		t.Fatalf("apply %s: %v", key, err)
	}
}

func watchUntilTerminal(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created, err := e.client.CreateOrder(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()
	// Any spelling of the id is watched by its canonical form, which notifications carry.
	stream, err := e.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: strings.ToUpper(id)})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(want orderv1.OrderStatus) {
		t.Helper()
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if got := msg.GetOrder().GetStatus(); got != want {
			t.Fatalf("status %s, want %s", got, want)
		}
	}
	recv(orderv1.OrderStatus_ORDER_STATUS_PENDING)
	apply(t, e, id, order.PaymentApproved)
	recv(orderv1.OrderStatus_ORDER_STATUS_PAYMENT_APPROVED)
	apply(t, e, id, order.InventoryReserved)
	recv(orderv1.OrderStatus_ORDER_STATUS_INVENTORY_RESERVED)
	apply(t, e, id, order.ShippingScheduled)
	recv(orderv1.OrderStatus_ORDER_STATUS_CONFIRMED)
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream after terminal status: %v, want EOF", err)
	}
}

func TestWatchOrder(t *testing.T) {
	t.Parallel()
	// Notifications alone must carry the changes: the poll is too slow for the test's deadline.
	e := start(t, nil, time.Hour)
	watchUntilTerminal(t, e)

	// A terminal order is sent once, and the stream ends.
	ctx := context.Background()
	created, err := e.client.CreateOrder(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	apply(t, e, created.GetOrder().GetOrderId(), order.PaymentFailed)
	stream, err := e.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: created.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := stream.Recv(); err != nil || msg.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED {
		t.Fatalf("%v %v", msg, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("%v, want EOF", err)
	}

	stream, err = e.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown order: %v", err)
	}
	stream, err = e.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: "order-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed id: %v", err)
	}
}

// silentFeed never signals, like a listener that lost every notification.
type silentFeed struct{}

func (silentFeed) Subscribe(string) (grpcapi.Subscription, *order.Order, func()) {
	return silentSubscription{make(chan struct{})}, nil, func() {}
}

func (silentFeed) Created(*order.Order) {}

type silentSubscription struct{ ready chan struct{} }

func (s silentSubscription) Ready() <-chan struct{}     { return s.ready }
func (silentSubscription) Take() ([]order.Update, bool) { return nil, false }

func TestWatchOrderPollsWithoutNotifications(t *testing.T) {
	t.Parallel()
	e := start(t, silentFeed{}, 50*time.Millisecond)
	watchUntilTerminal(t, e)
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := start(t, silentFeed{}, 0)
	resp, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "order.v1.OrderService"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
}

func TestGateway(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := grpcapi.Gateway(ctx, e.addr, grpcapi.GatewayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(lis)
	defer srv.Close()
	base := "http://" + lis.Addr().String()

	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	code, body := post("/orders", `{"customer_id": "`+uuid.NewString()+`", "payment_method": "credit_card",
		"items": [{"product_id": "00000000-0000-0000-0000-000000000001", "quantity": 2, "unit_price": "49.90"}]}`)
	if code != http.StatusOK {
		t.Fatalf("create: %d %v", code, body)
	}
	created := body["order"].(map[string]any)
	id := created["order_id"].(string)
	if created["total"] != "99.80" || created["status"] != "ORDER_STATUS_PENDING" || created["failure_reason"] != "" {
		t.Errorf("created %v", created)
	}

	for _, path := range []string{"/orders/" + id, "/v1/orders/" + id} {
		if code, body := get(path); code != http.StatusOK || body["order"].(map[string]any)["order_id"] != id {
			t.Errorf("GET %s: %d %v", path, code, body)
		}
	}
	if code, _ := get("/v1/orders/" + uuid.NewString()); code != http.StatusNotFound {
		t.Errorf("unknown order: %d", code)
	}
	if code, body := post("/v1/orders", `{"customer_id": "x"}`); code != http.StatusBadRequest || !strings.HasPrefix(body["message"].(string), "customer_id: ") {
		t.Errorf("invalid: %d %v", code, body)
	}
	if code, _ := post("/v1/orders", `{"customer_id": `); code != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d", code)
	}
	if code, body := get("/v1/orders?page_size=10"); code != http.StatusOK || len(body["orders"].([]any)) != 1 {
		t.Errorf("list: %d %v", code, body)
	}
	if code, body := get("/openapi.json"); code != http.StatusOK || body["swagger"] != "2.0" {
		t.Errorf("openapi: %d", code)
	}
	if code, body := get("/openapi3.json"); code != http.StatusOK || !strings.HasPrefix(body["openapi"].(string), "3.") {
		t.Errorf("openapi3: %d", code)
	}

	// WatchOrder streams newline-delimited JSON until the order is terminal.
	apply(t, e, id, order.PaymentFailed)
	resp, err := http.Get(base + "/v1/orders/" + id + ":watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if resp.StatusCode != http.StatusOK || len(lines) != 1 || !strings.Contains(lines[0], "ORDER_STATUS_PAYMENT_FAILED") {
		t.Errorf("watch: %d %q", resp.StatusCode, lines)
	}
}
