package e2e

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// placeSeveral places n orders for one new customer, one after the other, and returns the
// customer and the order ids newest first.
func placeSeveral(t *testing.T, n int) (string, []string) {
	t.Helper()
	customer := uuid.NewString()
	p := product(t, 100)
	var ids []string
	for range n {
		req := orderReq(p, 1, "2.50")
		req.CustomerId = customer
		ids = append(ids, create(t, req).GetOrderId())
	}
	slices.Reverse(ids)
	return customer, ids
}

// checkListed asserts that the pages held every order exactly once, newest first.
func checkListed(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want newest first %v", got, want)
	}
}

func TestListOrdersGRPC(t *testing.T) {
	t.Parallel()
	customer, want := placeSeveral(t, 5)
	// Another customer's order must not show up.
	create(t, orderReq(product(t, 1), 1, "1.00"))

	var got []string
	req := &orderv1.ListOrdersRequest{CustomerId: customer, PageSize: 2}
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatalf("pagination does not end; got %v", got)
		}
		resp, err := sys.OrderClient().ListOrders(ctxT(t, 10*time.Second), req)
		if err != nil {
			t.Fatalf("ListOrders: %v", err)
		}
		if len(resp.GetOrders()) > 2 {
			t.Fatalf("page of %d orders, want at most 2", len(resp.GetOrders()))
		}
		for _, o := range resp.GetOrders() {
			if o.GetCustomerId() != customer {
				t.Errorf("listed order %s of customer %s", o.GetOrderId(), o.GetCustomerId())
			}
			got = append(got, o.GetOrderId())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	checkListed(t, got, want)
}

// checkWatched asserts a watched order moved forward only and ended CONFIRMED.
func checkWatched(t *testing.T, statuses []orderv1.OrderStatus) {
	t.Helper()
	if len(statuses) == 0 || statuses[len(statuses)-1] != confirmed {
		t.Fatalf("watched %v, want CONFIRMED last", statuses)
	}
	for i := 1; i < len(statuses); i++ {
		if statuses[i] < statuses[i-1] {
			t.Errorf("watched status went back: %v", statuses)
		}
	}
}

func TestWatchOrderGRPC(t *testing.T) {
	t.Parallel()
	id := create(t, orderReq(product(t, 10), 2, "49.90")).GetOrderId()
	stream, err := sys.OrderClient().WatchOrder(ctxT(t, outcomeTimeout), &orderv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []orderv1.OrderStatus
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v (statuses so far %v)", err, statuses)
		}
		if resp.GetOrder().GetOrderId() != id {
			t.Fatalf("watch sent order %s, want %s", resp.GetOrder().GetOrderId(), id)
		}
		statuses = append(statuses, resp.GetOrder().GetStatus())
	}
	checkWatched(t, statuses)
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
	if field != "" && !strings.Contains(st.Message(), field) {
		t.Errorf("message %q does not name %q", st.Message(), field)
	}
}

// badCreates are invalid CreateOrder requests, each with the field the error must name.
var badCreates = []struct {
	name   string
	mutate func(*orderv1.CreateOrderRequest)
	field  string
}{
	{"no items", func(r *orderv1.CreateOrderRequest) { r.Items = nil }, "items"},
	{"quantity 0", func(r *orderv1.CreateOrderRequest) { r.Items[0].Quantity = 0 }, "items[0].quantity"},
	{"quantity -1", func(r *orderv1.CreateOrderRequest) { r.Items[0].Quantity = -1 }, "items[0].quantity"},
	{"second line quantity", func(r *orderv1.CreateOrderRequest) {
		r.Items = append(r.Items, &orderv1.LineItem{ProductId: uuid.NewString(), Quantity: 0, UnitPrice: "1.00"})
	}, "items[1].quantity"},
	{"malformed customer_id", func(r *orderv1.CreateOrderRequest) { r.CustomerId = "not-a-uuid" }, "customer_id"},
	{"empty customer_id", func(r *orderv1.CreateOrderRequest) { r.CustomerId = "" }, "customer_id"},
	{"malformed product_id", func(r *orderv1.CreateOrderRequest) { r.Items[0].ProductId = "xyz" }, "items[0].product_id"},
	{"unit_price 3 decimals", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "1.234" }, "unit_price"},
	{"unit_price negative", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "-1.00" }, "unit_price"},
	{"unit_price not a number", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "abc" }, "unit_price"},
	{"unit_price exponent", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "1e3" }, "unit_price"},
	{"unit_price empty", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = "" }, "unit_price"},
	{"unknown payment_method", func(r *orderv1.CreateOrderRequest) { r.PaymentMethod = "bitcoin" }, "payment_method"},
	{"empty payment_method", func(r *orderv1.CreateOrderRequest) { r.PaymentMethod = "" }, "payment_method"},
}

func TestBadInputGRPC(t *testing.T) {
	t.Parallel()
	p := product(t, 10)
	for _, tc := range badCreates {
		t.Run(tc.name, func(t *testing.T) {
			req := orderReq(p, 1, "1.00")
			tc.mutate(req)
			_, err := sys.OrderClient().CreateOrder(ctxT(t, 10*time.Second), req)
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}
	t.Run("GetOrder malformed id", func(t *testing.T) {
		_, err := sys.OrderClient().GetOrder(ctxT(t, 10*time.Second), &orderv1.GetOrderRequest{OrderId: "nope"})
		wantCode(t, err, codes.InvalidArgument, "order_id")
	})
	t.Run("GetOrder unknown id", func(t *testing.T) {
		_, err := sys.OrderClient().GetOrder(ctxT(t, 10*time.Second), &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
		wantCode(t, err, codes.NotFound, "")
	})
	t.Run("WatchOrder unknown id", func(t *testing.T) {
		stream, err := sys.OrderClient().WatchOrder(ctxT(t, 10*time.Second), &orderv1.WatchOrderRequest{OrderId: uuid.NewString()})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.NotFound, "")
	})
	t.Run("ListOrders malformed customer_id", func(t *testing.T) {
		_, err := sys.OrderClient().ListOrders(ctxT(t, 10*time.Second), &orderv1.ListOrdersRequest{CustomerId: "x"})
		wantCode(t, err, codes.InvalidArgument, "customer_id")
	})
}
