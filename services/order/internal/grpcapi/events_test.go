package grpcapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
)

// serveGateway serves the REST facade of e on 127.0.0.1:0 and returns its base URL.
func serveGateway(t *testing.T, e *env, opts grpcapi.GatewayOptions) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := grpcapi.Gateway(ctx, e.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String()
}

// TestWatchOrderEventStream follows an order with an SSE client that behaves like a browser's
// EventSource (it reconnects with Last-Event-ID and stops on a response that is not an event
// stream): one event per status change up to CONFIRMED, then 204 on the reconnect.
func TestWatchOrderEventStream(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	base := serveGateway(t, e, grpcapi.GatewayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created, err := e.client.CreateOrder(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/orders/"+id+":watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &sse.Client{Backoff: sse.Backoff{InitialInterval: 10 * time.Millisecond, MaxRetries: 5}}
	conn := client.NewConnection(req)
	events := make(chan sse.Event, 16)
	conn.SubscribeToAll(func(ev sse.Event) { events <- ev })
	done := make(chan error, 1)
	go func() { done <- conn.Connect() }()

	want := []orderv1.OrderStatus{
		orderv1.OrderStatus_ORDER_STATUS_PENDING,
		orderv1.OrderStatus_ORDER_STATUS_PAYMENT_APPROVED,
		orderv1.OrderStatus_ORDER_STATUS_INVENTORY_RESERVED,
		orderv1.OrderStatus_ORDER_STATUS_CONFIRMED,
	}
	moves := []order.EventKind{order.PaymentApproved, order.InventoryReserved, order.ShippingScheduled}
	for i, status := range want {
		var ev sse.Event
		select {
		case ev = <-events:
		case err := <-done:
			t.Fatalf("stream ended before event %d: %v", i+1, err)
		case <-ctx.Done():
			t.Fatalf("no event %d", i+1)
		}
		var resp orderv1.WatchOrderResponse
		if err := protojson.Unmarshal([]byte(ev.Data), &resp); err != nil {
			t.Fatalf("event %d data %q: %v", i+1, ev.Data, err)
		}
		if ev.Type != "" || resp.GetOrder().GetStatus() != status || ev.LastEventID != strconv.Itoa(i+1) {
			t.Fatalf("event %d: type %q id %q status %s, want a message with id %d and %s",
				i+1, ev.Type, ev.LastEventID, resp.GetOrder().GetStatus(), i+1, status)
		}
		if !strings.Contains(ev.Data, `"order_id"`) {
			t.Errorf("event data does not use the proto field names: %s", ev.Data)
		}
		if i < len(moves) {
			apply(t, e, id, moves[i])
		}
	}
	// The server closed the stream at CONFIRMED; the client reconnected with Last-Event-ID 4 and
	// was told 204, which ends it for good, without a repeated event.
	var cerr *sse.ConnectionError
	select {
	case err := <-done:
		if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "204") {
			t.Fatalf("Connect ended with %v, want the 204 that stops reconnecting", err)
		}
	case <-ctx.Done():
		t.Fatal("the client is still connected after the terminal status")
	}
	select {
	case ev := <-events:
		t.Errorf("event after the terminal one: %+v", ev)
	default:
	}
}

// An idle event stream sends comment lines; errors before the stream are plain JSON errors.
func TestWatchOrderEventStreamHeartbeatAndErrors(t *testing.T) {
	t.Parallel()
	e := start(t, nil, 0)
	base := serveGateway(t, e, grpcapi.GatewayOptions{Heartbeat: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created, err := e.client.CreateOrder(ctx, validRequest())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, accept, lastEventID string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	path := "/v1/orders/" + created.GetOrder().GetOrderId() + ":watch"

	resp := get(path, "text/event-stream", "")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("event stream: %d %s", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() && len(lines) < 20 {
		lines = append(lines, sc.Text())
		if sc.Text() == ": heartbeat" {
			break
		}
	}
	if len(lines) < 3 || lines[0] != "id: 1" || !strings.HasPrefix(lines[1], "data: {") || lines[len(lines)-1] != ": heartbeat" {
		t.Errorf("stream %q, want the order, then a heartbeat comment", lines)
	}

	// A reconnect that saw event 1 gets the stream without it.
	resp = get(path, "text/event-stream", "1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reconnect: %d", resp.StatusCode)
	}
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if first != ": heartbeat\n" {
		t.Errorf("reconnect after event 1 began with %q, want a heartbeat", first)
	}

	for _, tc := range []struct {
		path string
		code int
	}{
		{"/v1/orders/" + uuid.NewString() + ":watch", http.StatusNotFound},
		{"/v1/orders/42:watch", http.StatusBadRequest},
	} {
		resp := get(tc.path, "text/event-stream", "")
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != tc.code || st.Message == "" {
			t.Errorf("%s: %d %+v %v, want %d with a JSON status", tc.path, resp.StatusCode, st, err, tc.code)
		}
	}

	// Without text/event-stream first, the watch stays newline-delimited JSON.
	for _, accept := range []string{"", "*/*", "application/json", "application/json, text/event-stream;q=0.5"} {
		apply(t, e, created.GetOrder().GetOrderId(), order.PaymentFailed)
		resp := get(path, accept, "")
		if ct := resp.Header.Get("Content-Type"); ct == "text/event-stream" {
			t.Errorf("Accept %q: got an event stream", accept)
		}
	}
}
