package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/auth/authtest"
)

// secured is a stack of its own with TLS on the API ports and token checks on, as
// DESIGN.md's "Who may do what" turns them on, with the keys and certificate made for the test.
type secured struct {
	sys    *stack.Stack
	iss    *authtest.TokenIssuer
	tls    *tls.Config
	order  orderv1.OrderServiceClient
	inv    inventoryv1.InventoryServiceClient
	health healthpb.HealthClient
	web    *http.Client
	admin  string // a token with both admin scopes
}

func startSecured(t *testing.T) *secured {
	t.Helper()
	dir := t.TempDir()
	iss, err := authtest.NewIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := authtest.NewCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := &secured{iss: iss, tls: cert.ClientConfig()}
	s.admin = iss.Token(authtest.Claims{Subject: "operator", Scopes: []string{auth.ScopeOrdersAdmin, auth.ScopeInventoryAdmin}})
	creds := grpc.WithTransportCredentials(credentials.NewTLS(s.tls))
	s.sys = stack.Start(t, stack.Options{
		Env:         authtest.Merge(iss.Env(), cert.Env()),
		DialOptions: []grpc.DialOption{creds, grpc.WithPerRPCCredentials(auth.Bearer{Token: s.admin})},
	})
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, creds)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	orderConn := dial(s.sys.OrderGRPC)
	s.order = orderv1.NewOrderServiceClient(orderConn)
	s.health = healthpb.NewHealthClient(orderConn)
	s.inv = inventoryv1.NewInventoryServiceClient(dial(s.sys.InventoryGRPC))
	s.web = &http.Client{Timeout: outcomeTimeout, Transport: &http.Transport{TLSClientConfig: s.tls}}
	return s
}

// as returns a context whose calls carry token ("" for none).
func as(t *testing.T, token string) context.Context {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// rest calls the REST facade over HTTPS with token ("" for none).
func (s *secured) rest(t *testing.T, token, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t, outcomeTimeout), method, "https://"+s.sys.OrderHTTP+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.web.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func wantGRPC(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}

func TestAuthOrders(t *testing.T) {
	t.Parallel()
	s := startSecured(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	aliceToken := s.iss.Token(authtest.Claims{Subject: alice})
	bobToken := s.iss.Token(authtest.Claims{Subject: bob})
	expired := s.iss.Token(authtest.Claims{Subject: alice, ExpiresIn: -time.Minute})
	forged := s.iss.ForeignToken(authtest.Claims{Subject: alice, Scopes: []string{auth.ScopeOrdersAdmin}})
	wrongAudience := s.iss.Token(authtest.Claims{Subject: alice, Audience: "another-api"})

	p, err := s.sys.InventoryClient().SetStock(ctxT(t, 10*time.Second), &inventoryv1.SetStockRequest{ProductId: uuid.NewString(), Quantity: 100})
	if err != nil {
		t.Fatalf("SetStock as operator: %v", err)
	}
	product := p.GetStock().GetProductId()
	reqFor := func(customer string) *orderv1.CreateOrderRequest {
		r := orderReq(product, 1, "3.00")
		r.CustomerId = customer
		return r
	}

	// gRPC. A customer places, reads, watches and lists its own orders; the saga runs as ever.
	created, err := s.order.CreateOrder(as(t, aliceToken), reqFor(alice))
	if err != nil {
		t.Fatalf("alice creates her order: %v", err)
	}
	aliceOrder := created.GetOrder().GetOrderId()
	created, err = s.order.CreateOrder(as(t, bobToken), reqFor(strings.ToUpper(bob)))
	if err != nil {
		t.Fatalf("bob creates his order: %v", err)
	}
	bobOrder := created.GetOrder().GetOrderId()
	if _, err := s.order.GetOrder(as(t, aliceToken), &orderv1.GetOrderRequest{OrderId: aliceOrder}); err != nil {
		t.Errorf("alice reads her order: %v", err)
	}
	watch, err := s.order.WatchOrder(as(t, aliceToken), &orderv1.WatchOrderRequest{OrderId: aliceOrder})
	if err == nil {
		_, err = watch.Recv()
	}
	if err != nil {
		t.Errorf("alice watches her order: %v", err)
	}
	list, err := s.order.ListOrders(as(t, aliceToken), &orderv1.ListOrdersRequest{})
	if err != nil || len(list.GetOrders()) != 1 || list.GetOrders()[0].GetOrderId() != aliceOrder {
		t.Errorf("alice lists (no filter): %v %v", list, err)
	}
	if list, err := s.order.ListOrders(as(t, aliceToken), &orderv1.ListOrdersRequest{CustomerId: alice}); err != nil || len(list.GetOrders()) != 1 {
		t.Errorf("alice lists her own: %v %v", list, err)
	}
	o, err := awaitSecured(t, s, aliceOrder)
	if err != nil || o.GetStatus() != confirmed {
		t.Fatalf("alice's order with auth on: %v %v", o, err)
	}

	// What a customer may not do.
	_, err = s.order.CreateOrder(as(t, aliceToken), reqFor(bob))
	wantGRPC(t, "alice creates for bob", err, codes.PermissionDenied)
	_, err = s.order.GetOrder(as(t, aliceToken), &orderv1.GetOrderRequest{OrderId: bobOrder})
	wantGRPC(t, "alice reads bob's order", err, codes.PermissionDenied)
	watch, err = s.order.WatchOrder(as(t, aliceToken), &orderv1.WatchOrderRequest{OrderId: bobOrder})
	if err == nil {
		_, err = watch.Recv()
	}
	wantGRPC(t, "alice watches bob's order", err, codes.PermissionDenied)
	_, err = s.order.ListOrders(as(t, aliceToken), &orderv1.ListOrdersRequest{CustomerId: bob})
	wantGRPC(t, "alice lists bob's orders", err, codes.PermissionDenied)
	// bob reusing alice's request_id never gets her order: while keys stay unique across
	// customers (release 1 may run beside this one, docs/upgrades.md) he is refused, naming
	// request_id, and alice's key still answers her.
	keyed := reqFor(alice)
	keyed.RequestId = "auth-" + uuid.NewString()
	alices, err := s.order.CreateOrder(as(t, aliceToken), keyed)
	if err != nil {
		t.Fatal(err)
	}
	same := reqFor(bob)
	same.RequestId = keyed.RequestId
	bobs, err := s.order.CreateOrder(as(t, bobToken), same)
	wantGRPC(t, "bob reuses alice's request_id", err, codes.AlreadyExists)
	if st := status.Convert(err); bobs != nil || !strings.HasPrefix(st.Message(), "request_id: ") {
		t.Errorf("bob reuses alice's request_id: %v %v, want it refused naming request_id", bobs, err)
	}
	if again, err := s.order.CreateOrder(as(t, aliceToken), keyed); err != nil || again.GetOrder().GetOrderId() != alices.GetOrder().GetOrderId() {
		t.Errorf("alice's key after bob's attempt: %v %v, want her order", again, err)
	}

	// Bad tokens, on a unary call and on the stream.
	for name, token := range map[string]string{"none": "", "expired": expired, "wrongly signed": forged, "wrong audience": wrongAudience} {
		_, err := s.order.GetOrder(as(t, token), &orderv1.GetOrderRequest{OrderId: aliceOrder})
		wantGRPC(t, "GetOrder with "+name+" token", err, codes.Unauthenticated)
		_, err = s.order.CreateOrder(as(t, token), reqFor(alice))
		wantGRPC(t, "CreateOrder with "+name+" token", err, codes.Unauthenticated)
		watch, err := s.order.WatchOrder(as(t, token), &orderv1.WatchOrderRequest{OrderId: aliceOrder})
		if err == nil {
			_, err = watch.Recv()
		}
		wantGRPC(t, "WatchOrder with "+name+" token", err, codes.Unauthenticated)
	}

	// orders:admin reads and lists anyone's orders, but places orders only for itself.
	admin := s.iss.Token(authtest.Claims{Subject: uuid.NewString(), Scopes: []string{auth.ScopeOrdersAdmin}})
	if _, err := s.order.GetOrder(as(t, admin), &orderv1.GetOrderRequest{OrderId: bobOrder}); err != nil {
		t.Errorf("admin reads bob's order: %v", err)
	}
	// bob's one order: his reuse of alice's request_id was refused.
	if list, err := s.order.ListOrders(as(t, admin), &orderv1.ListOrdersRequest{CustomerId: bob}); err != nil || len(list.GetOrders()) != 1 {
		t.Errorf("admin lists bob's orders: %v %v", list, err)
	}
	if list, err := s.order.ListOrders(as(t, admin), &orderv1.ListOrdersRequest{}); err != nil || len(list.GetOrders()) < 3 {
		t.Errorf("admin lists everyone's orders: %v %v", list, err)
	}
	_, err = s.order.CreateOrder(as(t, admin), reqFor(bob))
	wantGRPC(t, "admin creates for bob", err, codes.PermissionDenied)

	// Health and reflection stay open; plaintext is refused by a TLS port.
	if _, err := s.health.Check(as(t, ""), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a token: %v", err)
	}
	plain, err := grpc.NewClient(s.sys.OrderGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = orderv1.NewOrderServiceClient(plain).GetOrder(as(t, aliceToken), &orderv1.GetOrderRequest{OrderId: aliceOrder})
	wantGRPC(t, "plaintext to the TLS port", err, codes.Unavailable)

	// REST over HTTPS: the same rules, as 401 and 403.
	for _, tc := range []struct {
		name, token, method, path, body string
		want                            int
	}{
		{"own order", aliceToken, "GET", "/v1/orders/" + aliceOrder, "", http.StatusOK},
		{"own order, seed route", aliceToken, "GET", "/orders/" + aliceOrder, "", http.StatusOK},
		{"own list", aliceToken, "GET", "/v1/orders?page_size=10", "", http.StatusOK},
		{"create own", aliceToken, "POST", "/v1/orders", createJSON(alice, product), http.StatusOK},
		{"no token", "", "GET", "/v1/orders/" + aliceOrder, "", http.StatusUnauthorized},
		{"no token, create", "", "POST", "/orders", createJSON(alice, product), http.StatusUnauthorized},
		{"expired", expired, "GET", "/v1/orders/" + aliceOrder, "", http.StatusUnauthorized},
		{"wrongly signed", forged, "GET", "/v1/orders?customer_id=" + bob, "", http.StatusUnauthorized},
		{"wrong audience", wrongAudience, "GET", "/v1/orders/" + aliceOrder, "", http.StatusUnauthorized},
		{"another's order", aliceToken, "GET", "/v1/orders/" + bobOrder, "", http.StatusForbidden},
		{"another's watch", aliceToken, "GET", "/v1/orders/" + bobOrder + ":watch", "", http.StatusForbidden},
		{"another's list", aliceToken, "GET", "/v1/orders?customer_id=" + bob, "", http.StatusForbidden},
		{"create for another", aliceToken, "POST", "/v1/orders", createJSON(bob, product), http.StatusForbidden},
		{"admin reads another's", admin, "GET", "/v1/orders/" + bobOrder, "", http.StatusOK},
		{"admin lists another's", admin, "GET", "/v1/orders?customer_id=" + bob, "", http.StatusOK},
	} {
		code, header, body := s.rest(t, tc.token, tc.method, tc.path, tc.body)
		if tc.name == "another's watch" && code == http.StatusOK {
			// A stream's status comes after its headers: the error is in the body.
			if !strings.Contains(string(body), `"code":7`) && !strings.Contains(string(body), `"code": 7`) {
				t.Errorf("REST %s: %d %s, want PERMISSION_DENIED in the stream", tc.name, code, body)
			}
			continue
		}
		if code != tc.want {
			t.Errorf("REST %s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Errorf("REST %s: body is not JSON: %s", tc.name, body)
		}
		if code == http.StatusUnauthorized && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("REST %s: 401 without a Bearer challenge", tc.name)
		}
	}
	// The Authorization header is the token that counts: an admin token smuggled in as gRPC
	// metadata (Grpc-Metadata-Authorization) grants nothing.
	req, _ := http.NewRequestWithContext(ctxT(t, 10*time.Second), "GET", "https://"+s.sys.OrderHTTP+"/v1/orders/"+bobOrder, nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	req.Header.Set("Grpc-Metadata-Authorization", "Bearer "+admin)
	if resp, err := s.web.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a second authorization as metadata: %d, want 403 or 401", resp.StatusCode)
		}
	}
}

func createJSON(customer, product string) string {
	return fmt.Sprintf(`{"customer_id": %q, "payment_method": "credit_card",
		"items": [{"product_id": %q, "quantity": 1, "unit_price": "3.00"}]}`, customer, product)
}

// awaitSecured follows an order to a terminal status as the operator.
func awaitSecured(t *testing.T, s *secured, id string) (*orderv1.Order, error) {
	t.Helper()
	ctx := ctxT(t, outcomeTimeout)
	for {
		resp, err := s.sys.OrderClient().GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: id})
		if err != nil {
			return nil, err
		}
		if terminal(resp.GetOrder().GetStatus()) {
			return resp.GetOrder(), nil
		}
		select {
		case <-ctx.Done():
			return resp.GetOrder(), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestAuthInventory(t *testing.T) {
	t.Parallel()
	s := startSecured(t)
	id := uuid.NewString()
	customer := s.iss.Token(authtest.Claims{Subject: uuid.NewString()})
	ordersAdmin := s.iss.Token(authtest.Claims{Subject: "ops", Scopes: []string{auth.ScopeOrdersAdmin}})
	inventoryAdmin := s.iss.Token(authtest.Claims{Subject: "ops", Scopes: []string{auth.ScopeInventoryAdmin}})
	for name, tc := range map[string]struct {
		token string
		want  codes.Code
	}{
		"no token":        {"", codes.Unauthenticated},
		"expired":         {s.iss.Token(authtest.Claims{Subject: "ops", Scopes: []string{auth.ScopeInventoryAdmin}, ExpiresIn: -time.Minute}), codes.Unauthenticated},
		"wrongly signed":  {s.iss.ForeignToken(authtest.Claims{Subject: "ops", Scopes: []string{auth.ScopeInventoryAdmin}}), codes.Unauthenticated},
		"customer":        {customer, codes.PermissionDenied},
		"orders:admin":    {ordersAdmin, codes.PermissionDenied},
		"inventory:admin": {inventoryAdmin, codes.OK},
	} {
		_, err := s.inv.SetStock(as(t, tc.token), &inventoryv1.SetStockRequest{ProductId: id, Quantity: 5})
		wantGRPC(t, "SetStock as "+name, err, tc.want)
		_, err = s.inv.GetStock(as(t, tc.token), &inventoryv1.GetStockRequest{ProductId: id})
		if tc.want == codes.OK && status.Code(err) == codes.NotFound {
			err = nil // the map's order decides whether SetStock ran yet
		}
		wantGRPC(t, "GetStock as "+name, err, tc.want)
	}
	got, err := s.inv.GetStock(as(t, inventoryAdmin), &inventoryv1.GetStockRequest{ProductId: id})
	if err != nil || got.GetStock().GetTotal() != 5 {
		t.Errorf("stock set by inventory:admin only: %v %v", got, err)
	}
}
