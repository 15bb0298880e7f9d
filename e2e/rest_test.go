package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// TestHappyPathREST places an order through both the versioned and the seed's routes and
// follows it to CONFIRMED, checking the JSON itself: snake_case names, prices as strings.
func TestHappyPathREST(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"/v1/orders", "/orders"} {
		t.Run(strings.TrimPrefix(base, "/"), func(t *testing.T) {
			t.Parallel()
			p := product(t, 100)
			body := fmt.Sprintf(`{
				"customer_id": %q,
				"payment_method": "credit_card",
				"items": [{"product_id": %q, "quantity": 2, "unit_price": "49.90"}],
				"shipping_address": {"recipient": "Ada", "city": "Porto", "country_code": "PT"}
			}`, uuid.NewString(), p)
			code, b := rest(t, http.MethodPost, base, body)
			if code != http.StatusOK {
				t.Fatalf("POST %s: %d %s", base, code, b)
			}
			var created orderv1.CreateOrderResponse
			decode(t, b, &created)
			id := created.GetOrder().GetOrderId()
			if _, err := uuid.Parse(id); err != nil {
				t.Fatalf("order id %q: %v\n%s", id, err, b)
			}

			var raw []byte
			eventually(t, "order "+id+" terminal over REST", func() bool {
				code, raw = rest(t, http.MethodGet, base+"/"+id, "")
				if code != http.StatusOK {
					t.Fatalf("GET %s/%s: %d %s", base, id, code, raw)
				}
				var got orderv1.GetOrderResponse
				decode(t, raw, &got)
				return terminal(got.GetOrder().GetStatus())
			})
			var got orderv1.GetOrderResponse
			decode(t, raw, &got)
			checkConfirmed(t, got.GetOrder())

			var doc struct {
				Order map[string]json.RawMessage `json:"order"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"order_id", "customer_id", "payment_method", "tracking_code", "shipping_address", "create_time"} {
				if _, ok := doc.Order[k]; !ok {
					t.Errorf("JSON order has no %q field: %s", k, raw)
				}
			}
			if s := string(doc.Order["status"]); s != `"ORDER_STATUS_CONFIRMED"` {
				t.Errorf("JSON status %s, want \"ORDER_STATUS_CONFIRMED\"", s)
			}
			if s := string(doc.Order["total"]); s != `"99.80"` {
				t.Errorf("JSON total %s, want \"99.80\"", s)
			}
			var items []map[string]json.RawMessage
			if err := json.Unmarshal(doc.Order["items"], &items); err != nil || len(items) != 1 {
				t.Fatalf("JSON items %s: %v", doc.Order["items"], err)
			}
			if s := string(items[0]["unit_price"]); s != `"49.90"` {
				t.Errorf("JSON unit_price %s, want \"49.90\"", s)
			}
			if _, ok := items[0]["product_id"]; !ok {
				t.Errorf("JSON item has no product_id: %s", doc.Order["items"])
			}
		})
	}
}

func TestListOrdersREST(t *testing.T) {
	t.Parallel()
	customer, want := placeSeveral(t, 5)
	var got []string
	token := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatalf("pagination does not end; got %v", got)
		}
		path := "/v1/orders?customer_id=" + customer + "&page_size=2"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		code, b := rest(t, http.MethodGet, path, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		if page == 0 && !bytes.Contains(b, []byte(`"next_page_token"`)) {
			t.Errorf("first page JSON has no next_page_token: %s", b)
		}
		var resp orderv1.ListOrdersResponse
		decode(t, b, &resp)
		if len(resp.GetOrders()) > 2 {
			t.Fatalf("page of %d orders, want at most 2", len(resp.GetOrders()))
		}
		for _, o := range resp.GetOrders() {
			got = append(got, o.GetOrderId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	checkListed(t, got, want)
}

// TestWatchOrderREST follows an order over the gateway's server stream: newline-delimited
// JSON objects {"result": {...}} until the order is terminal and the stream ends.
func TestWatchOrderREST(t *testing.T) {
	t.Parallel()
	id := create(t, orderReq(product(t, 10), 2, "49.90")).GetOrderId()
	req, err := http.NewRequestWithContext(ctxT(t, outcomeTimeout), http.MethodGet, "http://"+sys.OrderHTTP+"/v1/orders/"+id+":watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: status %d", resp.StatusCode)
	}
	var statuses []orderv1.OrderStatus
	var streamed bytes.Buffer
	defer func() { validateREST(t, req, resp.StatusCode, resp.Header, streamed.Bytes()) }()
	sc := bufio.NewScanner(io.TeeReader(resp.Body, &streamed))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var msg struct {
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			t.Fatalf("watch line %s: %v", line, err)
		}
		if msg.Error != nil || msg.Result == nil {
			t.Fatalf("watch line without result: %s", line)
		}
		var w orderv1.WatchOrderResponse
		decode(t, msg.Result, &w)
		if w.GetOrder().GetOrderId() != id {
			t.Fatalf("watch sent order %s, want %s", w.GetOrder().GetOrderId(), id)
		}
		statuses = append(statuses, w.GetOrder().GetStatus())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("watch stream: %v (statuses so far %v)", err, statuses)
	}
	checkWatched(t, statuses)
}

func TestOpenAPI(t *testing.T) {
	t.Parallel()
	code, b := rest(t, http.MethodGet, "/openapi.json", "")
	if code != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %s", code, b)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if !bytes.Contains(b, []byte(`"/v1/orders"`)) {
		t.Errorf("openapi.json does not describe /v1/orders")
	}
}

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, svc := range []string{"order", "payment", "inventory", "shipping"} {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := client.Get("http://" + sys.OpsAddr(svc, 0) + path)
			if err != nil {
				t.Errorf("%s %s: %v", svc, path, err)
				continue
			}
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: %d %s", svc, path, resp.StatusCode, body.String())
			}
			if path == "/metrics" && !strings.Contains(body.String(), "ordersaga_") {
				t.Errorf("%s /metrics has no ordersaga_ metric", svc)
			}
		}
	}
}

// restError is the gateway's JSON error body.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func wantHTTP(t *testing.T, code int, body []byte, want int, field string) {
	t.Helper()
	if code != want {
		t.Fatalf("status %d, want %d: %s", code, want, body)
	}
	var e restError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	if e.Message == "" {
		t.Errorf("error body has no message: %s", body)
	}
	if field != "" && !strings.Contains(e.Message, field) {
		t.Errorf("message %q does not name %q", e.Message, field)
	}
}

func TestBadInputREST(t *testing.T) {
	t.Parallel()
	p := product(t, 10)
	for _, tc := range badCreates {
		t.Run(tc.name, func(t *testing.T) {
			req := orderReq(p, 1, "1.00")
			tc.mutate(req)
			body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			code, b := rest(t, http.MethodPost, "/v1/orders", string(body))
			wantHTTP(t, code, b, http.StatusBadRequest, tc.field)
		})
	}
	for _, body := range []string{`{"customer_id": `, `not json`, `{"items": "many"}`, `{"items": [{"quantity": "two"}]}`} {
		t.Run("malformed body "+body, func(t *testing.T) {
			code, b := rest(t, http.MethodPost, "/v1/orders", body)
			wantHTTP(t, code, b, http.StatusBadRequest, "")
		})
	}
	t.Run("malformed id", func(t *testing.T) {
		code, b := rest(t, http.MethodGet, "/v1/orders/nope", "")
		wantHTTP(t, code, b, http.StatusBadRequest, "order_id")
	})
	for _, base := range []string{"/v1/orders/", "/orders/"} {
		t.Run("unknown id "+base, func(t *testing.T) {
			code, b := rest(t, http.MethodGet, base+uuid.NewString(), "")
			wantHTTP(t, code, b, http.StatusNotFound, "")
		})
	}
}

// The saga's metrics an operator reads first: completion by outcome, per-stage latency, and
// gRPC handling-time histograms on both gRPC servers.
func TestSagaMetrics(t *testing.T) {
	t.Parallel()
	p := product(t, 10)
	o := create(t, orderReq(p, 1, "1.00"))
	if got := waitTerminal(t, o.GetOrderId()).GetStatus(); got != orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
		t.Fatalf("order ended %v", got)
	}
	stock(t, p) // one call to inventory's admin API
	client := &http.Client{Timeout: 10 * time.Second}
	scrape := func(svc string) string {
		resp, err := client.Get("http://" + sys.OpsAddr(svc, 0) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		return body.String()
	}
	for svc, series := range map[string][]string{
		"order": {`ordersaga_order_completion_seconds_count{outcome="CONFIRMED"}`, `ordersaga_stage_latency_seconds_count{queue="order.shipping-scheduled"}`,
			`ordersaga_orders{status="PENDING"}`, `grpc_server_handling_seconds_bucket{grpc_method="CreateOrder"`},
		"payment":   {`ordersaga_stage_latency_seconds_count{queue="payment.order-created"}`},
		"inventory": {`ordersaga_stage_latency_seconds_count{queue="inventory.payment-approved"}`, `grpc_server_handling_seconds_bucket{grpc_method="GetStock"`},
		"shipping":  {`ordersaga_stage_latency_seconds_count{queue="shipping.inventory-reserved"}`},
	} {
		body := scrape(svc)
		// The exposition itself is valid, as Prometheus's own linter reads it
		// (scripts/deploy-tools.sh installs promtool for make test).
		lint := exec.Command("promtool", "check", "metrics")
		lint.Stdin = strings.NewReader(body)
		if out, err := lint.CombinedOutput(); err != nil {
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("promtool: %v (make test installs it)", err)
			}
			// Lint findings (exit 3) are style advice; anything else is an invalid exposition.
			if exit.ExitCode() != 3 {
				t.Errorf("%s /metrics: promtool check metrics: %v\n%s", svc, err, out)
			}
		}
		for _, s := range series {
			if !strings.Contains(body, s) {
				t.Errorf("%s /metrics lacks %s", svc, s)
			}
		}
	}
}
