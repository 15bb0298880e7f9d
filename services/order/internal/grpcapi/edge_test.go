package grpcapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
)

// TestHostileInputGRPC: oversized, control-character and oddly spelled input is refused with
// the field named (or, past the size limit, before it is read), never INTERNAL.
func TestHostileInputGRPC(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		edit  func(*orderv1.CreateOrderRequest)
		code  codes.Code
		field string
	}{
		{"3 MB recipient", func(r *orderv1.CreateOrderRequest) { r.ShippingAddress.Recipient = strings.Repeat("a", 3<<20) }, codes.ResourceExhausted, ""},
		{"long recipient", func(r *orderv1.CreateOrderRequest) { r.ShippingAddress.Recipient = strings.Repeat("a", 201) }, codes.InvalidArgument, "shipping_address.recipient"},
		{"NUL in city", func(r *orderv1.CreateOrderRequest) { r.ShippingAddress.City = "Lis\x00bon" }, codes.InvalidArgument, "shipping_address.city"},
		{"NUL in request id", func(r *orderv1.CreateOrderRequest) { r.RequestId = "\x00" }, codes.InvalidArgument, "request_id"},
		{"urn product id", func(r *orderv1.CreateOrderRequest) {
			r.Items[0].ProductId = "urn:uuid:00000000-0000-0000-0000-000000000001"
		}, codes.InvalidArgument, "items[0].product_id"},
		{"braced customer id", func(r *orderv1.CreateOrderRequest) { r.CustomerId = "{" + uuid.NewString() + "}" }, codes.InvalidArgument, "customer_id"},
		{"long price", func(r *orderv1.CreateOrderRequest) { r.Items[0].UnitPrice = strings.Repeat("1", 1000) }, codes.InvalidArgument, "items[0].unit_price"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := validRequest()
			tc.edit(req)
			_, err := e.client.CreateOrder(ctx, req)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.field) {
				t.Fatalf("got %s %q, want %s naming %q", st.Code(), st.Message(), tc.code, tc.field)
			}
		})
	}
	for _, id := range []string{"urn:uuid:" + uuid.NewString(), "{" + uuid.NewString() + "}", "\x00"} {
		_, err := e.client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "order_id: ") {
			t.Errorf("GetOrder(%q): %v", id, err)
		}
	}
	_, err := e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{CustomerId: "urn:uuid:" + uuid.NewString()})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "customer_id: ") {
		t.Errorf("ListOrders by urn: %v", err)
	}
	_, err = e.client.ListOrders(ctx, &orderv1.ListOrdersRequest{PageToken: strings.Repeat("x", 10_000)})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "page_token: ") {
		t.Errorf("ListOrders with a long token: %v", err)
	}

	// The same customer, spelled in capitals, is one customer.
	req := validRequest()
	req.CustomerId = strings.ToUpper(req.CustomerId)
	created, err := e.client.CreateOrder(ctx, req)
	if err != nil || created.GetOrder().GetCustomerId() != strings.ToLower(req.CustomerId) {
		t.Fatalf("upper-case customer: %v %v", created, err)
	}
}

// zeros is an endless body: a server that buffers it whole never answers.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > z.n {
		n = z.n
	}
	for i := range p[:n] {
		p[i] = ' '
	}
	z.n -= n
	return int(n), nil
}

func TestHostileInputREST(t *testing.T) {
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

	send := func(body io.Reader, length int64) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/v1/orders", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	tooLarge := func(what string, code int, body map[string]any) {
		t.Helper()
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(body["message"].(string), "65536 bytes") {
			t.Errorf("%s: %d %v", what, code, body)
		}
	}
	// 200 MB, declared and not: refused after at most the limit is read.
	code, body := send(&zeros{n: 200 << 20}, 200<<20)
	tooLarge("declared 200 MB", code, body)
	code, body = send(&zeros{n: 200 << 20}, -1)
	tooLarge("chunked 200 MB", code, body)

	valid := func(recipient string) string {
		return `{"customer_id": "` + uuid.NewString() + `", "payment_method": "credit_card",
			"items": [{"product_id": "00000000-0000-0000-0000-000000000001", "quantity": 1, "unit_price": "1.00"}],
			"shipping_address": {"recipient": "` + recipient + `", "country_code": "BR"}}`
	}
	code, body = send(strings.NewReader(valid("Ada\\u0000")), -1)
	if code != http.StatusBadRequest || !strings.HasPrefix(body["message"].(string), "shipping_address.recipient: ") {
		t.Errorf("NUL: %d %v", code, body)
	}
	code, body = send(strings.NewReader(valid(strings.Repeat("a", 3000))), -1)
	if code != http.StatusBadRequest || !strings.HasPrefix(body["message"].(string), "shipping_address.recipient: ") {
		t.Errorf("long recipient: %d %v", code, body)
	}
	code, body = send(strings.NewReader(strings.Replace(valid("Ada"), "00000000-0000-0000-0000-000000000001", "urn:uuid:00000000-0000-0000-0000-000000000001", 1)), -1)
	if code != http.StatusBadRequest || !strings.HasPrefix(body["message"].(string), "items[0].product_id: ") {
		t.Errorf("urn product: %d %v", code, body)
	}
	if code, body = send(strings.NewReader(valid("Ada")), -1); code != http.StatusOK {
		t.Errorf("valid: %d %v", code, body)
	}
	resp, err := http.Get(base + "/v1/orders/urn:uuid:" + uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET by urn: %d", resp.StatusCode)
	}
}
