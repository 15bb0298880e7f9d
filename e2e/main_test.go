// Package e2e drives the running system — four service processes, RabbitMQ and PostgreSQL —
// through its public gRPC and REST APIs only, and checks the saga's outcomes in the
// services' databases.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// outcomeTimeout bounds the wait for an order's saga to finish.
const outcomeTimeout = 30 * time.Second

// One stack serves every test of the package: starting four processes costs seconds, and
// each test isolates itself with fresh customers and products.
var (
	sys *stack.Stack
	dbs map[string]*pgxpool.Pool // service → pool on its database, for checking outcomes
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: every test drives the running services: none under -short (make test runs them)")
		return 0
	}
	logDir, err := os.MkdirTemp("", "ordersaga-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stack.RemoveBinaries()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, stop, err := stack.StartWith(ctx, stack.Options{}, logDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "start stack: %v\nlogs in %s\n", err, logDir)
		return 1
	}
	sys = s
	dbs = map[string]*pgxpool.Pool{}
	for svc, url := range s.DatabaseURLs {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			stop()
			return 1
		}
		dbs[svc] = pool
	}

	code := m.Run()

	for _, pool := range dbs {
		pool.Close()
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "service logs (full logs kept in %s):\n%s", logDir, s.LogTails(60))
	}
	stop()
	if code == 0 {
		os.RemoveAll(logDir)
	}
	return code
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// product creates a fresh product with the given stock and returns its id.
func product(t *testing.T, quantity int64) string {
	t.Helper()
	id := uuid.NewString()
	_, err := sys.InventoryClient().SetStock(ctxT(t, 10*time.Second), &inventoryv1.SetStockRequest{ProductId: id, Quantity: quantity})
	if err != nil {
		t.Fatalf("SetStock(%s, %d): %v", id, quantity, err)
	}
	return id
}

func stock(t *testing.T, productID string) *inventoryv1.Stock {
	t.Helper()
	resp, err := sys.InventoryClient().GetStock(ctxT(t, 10*time.Second), &inventoryv1.GetStockRequest{ProductId: productID})
	if err != nil {
		t.Fatalf("GetStock(%s): %v", productID, err)
	}
	return resp.GetStock()
}

// orderReq is a valid one-line credit-card order for a fresh customer.
func orderReq(productID string, quantity int32, price string) *orderv1.CreateOrderRequest {
	return &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   "credit_card",
		Items:           []*orderv1.LineItem{{ProductId: productID, Quantity: quantity, UnitPrice: price}},
		ShippingAddress: &orderv1.ShippingAddress{Recipient: "Ada", Line1: "1 Main St", City: "Recife", PostalCode: "50000-000", CountryCode: "BR"},
	}
}

func create(t *testing.T, req *orderv1.CreateOrderRequest) *orderv1.Order {
	t.Helper()
	resp, err := sys.OrderClient().CreateOrder(ctxT(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	if resp.GetOrder().GetOrderId() == "" {
		t.Fatalf("CreateOrder returned no order id: %v", resp)
	}
	return resp.GetOrder()
}

func terminal(s orderv1.OrderStatus) bool {
	switch s {
	case orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED,
		orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return true
	}
	return false
}

// waitTerminal follows an order with WatchOrder until it is terminal, reopening the stream
// when it breaks, and returns the order as GetOrder reports it then.
func waitTerminal(t *testing.T, orderID string) *orderv1.Order {
	t.Helper()
	o, err := awaitTerminal(ctxT(t, outcomeTimeout), orderID)
	if err != nil {
		t.Fatalf("order %s: %v", orderID, err)
	}
	return o
}

func awaitTerminal(ctx context.Context, orderID string) (*orderv1.Order, error) {
	var last error
	for ctx.Err() == nil {
		stream, err := sys.OrderClient().WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: orderID})
		if err == nil {
			for {
				resp, err := stream.Recv()
				if err != nil {
					last = err
					break
				}
				if terminal(resp.GetOrder().GetStatus()) {
					got, err := sys.OrderClient().GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderID})
					if err != nil {
						return nil, err
					}
					return got.GetOrder(), nil
				}
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("not terminal within %s (last stream error: %v)", outcomeTimeout, last)
}

func history(o *orderv1.Order) []orderv1.OrderStatus {
	var h []orderv1.OrderStatus
	for _, c := range o.GetHistory() {
		h = append(h, c.GetStatus())
	}
	return h
}

func wantStatus(t *testing.T, o *orderv1.Order, want orderv1.OrderStatus) {
	t.Helper()
	if o.GetStatus() != want {
		t.Fatalf("order %s: status %s, want %s (failure reason %q, history %v)",
			o.GetOrderId(), o.GetStatus(), want, o.GetFailureReason(), history(o))
	}
}

// paymentStatus is the order's payment row status in paymentdb, "" when there is none.
func paymentStatus(t *testing.T, orderID string) string {
	t.Helper()
	var status string
	err := dbs["payment"].QueryRow(ctxT(t, 10*time.Second),
		"SELECT status FROM payments WHERE order_id = $1", orderID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatalf("payment of %s: %v", orderID, err)
	}
	return status
}

func count(t *testing.T, svc, query string, args ...any) int {
	t.Helper()
	var n int
	if err := dbs[svc].QueryRow(ctxT(t, 10*time.Second), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %s: %v", svc, query, err)
	}
	return n
}

// eventually polls cond every 50ms until it holds or the outcome timeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(outcomeTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", outcomeTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: outcomeTimeout}

// rest sends a request to the REST facade and returns the status code and body. Every response
// is validated against the published OpenAPI document.
func rest(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t, outcomeTimeout), method, "http://"+sys.OrderHTTP+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	validateREST(t, req, resp.StatusCode, resp.Header, b)
	return resp.StatusCode, b
}

// decode reads a REST JSON body into a proto message, failing on unknown fields.
func decode(t *testing.T, body []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(body, m); err != nil {
		t.Fatalf("decode %T: %v\n%s", m, err, body)
	}
}

// parallel runs fn n times at once and waits for all.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}
