package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	paymentv1 "github.com/ordersaga/ordersaga/gen/payment/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// span is one exported span with the name of the service that exported it.
type span struct {
	service string
	*tracepb.Span
}

func (s span) traceID() string  { return hex.EncodeToString(s.TraceId) }
func (s span) id() string       { return hex.EncodeToString(s.SpanId) }
func (s span) parentID() string { return hex.EncodeToString(s.ParentSpanId) }

func (s span) attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
				return v.StringValue
			}
			return kv.GetValue().String()
		}
	}
	return ""
}

// receiver is an OTLP/gRPC trace receiver keeping every span it is sent.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []span
}

func (r *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, span{service, s})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) all() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// serveReceiver serves an OTLP trace receiver on a free loopback port for the test.
func serveReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return r, lis.Addr().String()
}

// traceSpans is the spans of one trace, by span id.
type traceSpans map[string]span

func byTrace(spans []span) map[string]traceSpans {
	out := map[string]traceSpans{}
	for _, s := range spans {
		if out[s.traceID()] == nil {
			out[s.traceID()] = traceSpans{}
		}
		out[s.traceID()][s.id()] = s
	}
	return out
}

// TestTracingFollowsEachOrderAcrossTheSaga runs a stack that exports its spans to a receiver
// the test serves, places an order of each outcome and checks that each is one trace across
// the services it involves, with the structure of the messaging conventions: every event's
// handling is a child of its message's send span, every batch a span linked to its messages.
func TestTracingFollowsEachOrderAcrossTheSaga(t *testing.T) {
	t.Parallel()
	recv, addr := serveReceiver(t)
	s := stack.Start(t, stack.Options{Env: map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"OTEL_TRACES_SAMPLER":         "parentbased_always_on",
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	p := uuid.NewString()
	if _, err := s.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: p, Quantity: 10}); err != nil {
		t.Fatal(err)
	}
	all := []string{"inventory", "order", "payment", "shipping"}
	type outcome struct {
		name     string
		req      *orderv1.CreateOrderRequest
		rest     bool
		want     orderv1.OrderStatus
		services []string
	}
	confirmedReq := orderReq(p, 2, "49.90")
	declined := orderReq(p, 1, "10.00")
	declined.PaymentMethod = "declined_card"
	noStock := orderReq(p, 1000, "1.00")
	antarctica := orderReq(p, 1, "5.00")
	antarctica.ShippingAddress.CountryCode = "AQ"
	outcomes := []*outcome{
		{name: "confirmed", req: confirmedReq, want: confirmed, services: all},
		{name: "confirmed over REST", req: orderReq(p, 1, "3.00"), rest: true, want: confirmed, services: all},
		{name: "payment declined", req: declined, want: payFailed, services: []string{"order", "payment"}},
		{name: "no stock", req: noStock, want: cancelled, services: []string{"inventory", "order", "payment"}},
		{name: "no carrier", req: antarctica, want: cancelled, services: all},
	}
	ids := map[*outcome]string{}
	for _, o := range outcomes {
		if o.rest {
			ids[o] = createREST(t, s, o.req)
		} else {
			resp, err := s.OrderClient().CreateOrder(ctx, o.req)
			if err != nil {
				t.Fatalf("%s: CreateOrder: %v", o.name, err)
			}
			ids[o] = resp.GetOrder().GetOrderId()
		}
	}
	for _, o := range outcomes {
		if got := pollTerminal(ctx, t, s, ids[o]); got != o.want {
			t.Fatalf("%s: %s, want %s", o.name, got, o.want)
		}
	}

	// A poisoned event that carries a trace: payment.failed for an order that does not
	// exist, which order-service dead-letters.
	poisonTrace, poisonSpan := strings.ReplaceAll(uuid.NewString(), "-", ""), "00f067aa0ba902b7"
	poisonID := publishPoison(ctx, t, s.AMQPURL, "00-"+poisonTrace+"-"+poisonSpan+"-01")

	// Every span of the orders' traces arrives: the terminal event's handling is the last.
	terminalKey := map[orderv1.OrderStatus]string{confirmed: "handle shipping.scheduled", payFailed: "handle payment.failed", cancelled: "handle payment.reversed"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := recv.all()
		done := 0
		for _, o := range outcomes {
			for _, sp := range spans {
				if sp.service == "order" && sp.Name == terminalKey[o.want] && sp.attr("ordersaga.order.id") == ids[o] {
					done++
					break
				}
			}
		}
		deadLettered := slices.ContainsFunc(spans, func(sp span) bool {
			return sp.traceID() == poisonTrace && strings.HasPrefix(sp.Name, "send ") && sp.service == "order"
		})
		if done == len(outcomes) && deadLettered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans of %d of %d orders (dead letter traced: %v) after 30s", done, len(outcomes), deadLettered)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// ordersctl shows the dead letter's trace id.
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	inspect := exec.CommandContext(ctx, filepath.Join(root, "bin", "ordersctl"), "dlq", "inspect", "order.payment-failed.dlq")
	inspect.Env = append(inspect.Environ(), "AMQP_URL="+s.AMQPURL)
	out, err := inspect.CombinedOutput()
	if err != nil {
		t.Fatalf("ordersctl dlq inspect: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), poisonID) || !strings.Contains(string(out), poisonTrace) {
		t.Errorf("ordersctl dlq inspect does not show the dead letter's trace id %s:\n%s", poisonTrace, out)
	}

	// Stop the services, which flushes their spans: every span started has ended by then, so
	// every parent named by a span has been exported.
	for _, svc := range stack.Services {
		if err := s.Stop(svc, 0); err != nil {
			t.Errorf("stop %s: %v", svc, err)
		}
	}
	spans := recv.all()
	traces := byTrace(spans)
	spanByID := map[string]span{}
	for _, sp := range spans {
		spanByID[sp.id()] = sp
		if sp.EndTimeUnixNano < sp.StartTimeUnixNano || sp.EndTimeUnixNano == 0 {
			t.Errorf("span %s (%s) ends before it starts", sp.Name, sp.service)
		}
	}
	for _, sp := range spans {
		if len(sp.ParentSpanId) > 0 && sp.traceID() != poisonTrace {
			if _, ok := traces[sp.traceID()][sp.parentID()]; !ok {
				t.Errorf("span %s of %s has a parent %s that was never exported (a span left unended)", sp.Name, sp.service, sp.parentID())
			}
		}
	}

	for _, o := range outcomes {
		id := ids[o]
		// One trace per order: every span about the order is in it.
		traceIDs := map[string]bool{}
		for _, sp := range spans {
			if sp.attr("ordersaga.order.id") == id && !strings.HasPrefix(sp.Name, "process ") {
				traceIDs[sp.traceID()] = true
			}
		}
		if len(traceIDs) != 1 {
			t.Errorf("%s: order %s is in %d traces, want 1", o.name, id, len(traceIDs))
			continue
		}
		var traceID string
		for k := range traceIDs {
			traceID = k
		}
		tr := traces[traceID]
		services := map[string]bool{}
		for _, sp := range tr {
			services[sp.service] = true
		}
		var got []string
		for svc := range services {
			got = append(got, svc)
		}
		sort.Strings(got)
		if !slices.Equal(got, o.services) {
			t.Errorf("%s: trace spans %v, want %v", o.name, got, o.services)
		}
		checkTrace(t, o.name, tr, spanByID, o.rest)
		if o.name == "confirmed" {
			t.Logf("trace %s of the confirmed order %s:\n%s", traceID, id, describe(tr))
		}
	}

	// The dead letter stays in the trace it carried: its handling failed and was sent on to
	// the dead-letter queue as children of the poisoned message's context.
	var handled, sent bool
	for _, sp := range traces[poisonTrace] {
		switch {
		case sp.Name == "handle payment.failed" && sp.parentID() == poisonSpan && sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR:
			handled = true
		case sp.Name == "send order.payment-failed" && sp.parentID() == poisonSpan && sp.attr("ordersaga.dead_letter.reason") != "":
			sent = true
		}
	}
	if !handled || !sent {
		t.Errorf("dead letter's trace: failed handling %v, dead-letter send %v:\n%s", handled, sent, describe(traces[poisonTrace]))
	}
}

// checkTrace checks one order's trace: it starts at CreateOrder (behind the REST facade's span
// when rest), every event's handling is a child of the send span of its message, linked to a
// batch span that links back to that message, every send is a child of CreateOrder or of an
// event's handling, and the order's insert is a database span of CreateOrder.
func checkTrace(t *testing.T, name string, tr traceSpans, spanByID map[string]span, rest bool) {
	t.Helper()
	var roots []span
	var create span
	for _, sp := range tr {
		if len(sp.ParentSpanId) == 0 {
			roots = append(roots, sp)
		}
		if sp.Name == "order.v1.OrderService/CreateOrder" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
			create = sp
		}
	}
	if len(roots) != 1 || create.Span == nil {
		t.Errorf("%s: %d roots, CreateOrder found %v:\n%s", name, len(roots), create.Span != nil, describe(tr))
		return
	}
	if rest {
		client := tr[create.parentID()]
		if client.Span == nil || client.Kind != tracepb.Span_SPAN_KIND_CLIENT || roots[0].id() != client.parentID() || roots[0].Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: CreateOrder is not behind the gateway's client span and the REST span:\n%s", name, describe(tr))
		}
	} else if roots[0].id() != create.id() {
		t.Errorf("%s: the trace starts at %s, not CreateOrder", name, roots[0].Name)
	}
	var inserts int
	for _, sp := range tr {
		parent := tr[sp.parentID()]
		switch {
		case strings.HasPrefix(sp.Name, "handle "):
			rk := strings.TrimPrefix(sp.Name, "handle ")
			if parent.Name != "send "+rk || parent.attr("messaging.message.id") != sp.attr("messaging.message.id") || sp.attr("messaging.message.id") == "" {
				t.Errorf("%s: %s (%s) is not a child of its message's send span but of %q", name, sp.Name, sp.service, parent.Name)
			}
			for _, k := range []string{"messaging.system", "messaging.destination.name", "messaging.rabbitmq.destination.routing_key", "messaging.destination.subscription.name", "messaging.message.conversation_id"} {
				if sp.attr(k) == "" {
					t.Errorf("%s: %s lacks %s", name, sp.Name, k)
				}
			}
			if len(sp.Links) != 1 {
				t.Errorf("%s: %s has %d links, want its batch", name, sp.Name, len(sp.Links))
				continue
			}
			batch, ok := spanByID[hex.EncodeToString(sp.Links[0].SpanId)]
			if !ok || !strings.HasPrefix(batch.Name, "process ") || len(batch.ParentSpanId) != 0 {
				t.Errorf("%s: %s links to %q, not a batch span", name, sp.Name, batch.Name)
				continue
			}
			if !slices.ContainsFunc(batch.Links, func(l *tracepb.Span_Link) bool { return hex.EncodeToString(l.SpanId) == parent.id() }) {
				t.Errorf("%s: batch %s does not link to the message %s handles", name, batch.Name, sp.Name)
			}
		case strings.HasPrefix(sp.Name, "send "):
			if parent.id() != create.id() && !strings.HasPrefix(parent.Name, "handle ") {
				t.Errorf("%s: %s (%s) is a child of %q", name, sp.Name, sp.service, parent.Name)
			}
			if sp.Kind != tracepb.Span_SPAN_KIND_PRODUCER || sp.attr("messaging.destination.name") == "" || sp.attr("messaging.message.id") == "" {
				t.Errorf("%s: %s lacks the messaging attributes", name, sp.Name)
			}
		case sp.attr("db.system.name") == "postgresql":
			if sp.parentID() == create.id() && strings.Contains(sp.attr("db.query.text"), "INSERT INTO orders") && sp.attr("db.namespace") != "" {
				inserts++
			}
		}
	}
	if inserts != 1 {
		t.Errorf("%s: %d database spans of the order's insert under CreateOrder, want 1", name, inserts)
	}
}

// describe lists a trace's spans as a tree.
func describe(tr traceSpans) string {
	children := map[string][]span{}
	for _, sp := range tr {
		children[sp.parentID()] = append(children[sp.parentID()], sp)
	}
	for _, c := range children {
		sort.Slice(c, func(i, j int) bool { return c[i].StartTimeUnixNano < c[j].StartTimeUnixNano })
	}
	var b strings.Builder
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, sp := range children[parent] {
			kind := strings.ToLower(strings.TrimPrefix(sp.Kind.String(), "SPAN_KIND_"))
			fmt.Fprintf(&b, "%s%s [%s, %s]", strings.Repeat("  ", depth), sp.Name, sp.service, kind)
			if len(sp.Links) > 0 {
				fmt.Fprintf(&b, " links %d", len(sp.Links))
			}
			if sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				fmt.Fprintf(&b, " error %q", sp.Status.GetMessage())
			}
			b.WriteString("\n")
			walk(sp.id(), depth+1)
		}
	}
	roots := ""
	for _, sp := range tr {
		if _, ok := tr[sp.parentID()]; !ok && len(sp.ParentSpanId) > 0 {
			roots = sp.parentID() // a remote parent outside the trace's exported spans
		}
	}
	walk("", 0)
	if roots != "" {
		walk(roots, 0)
	}
	return b.String()
}

func pollTerminal(ctx context.Context, t *testing.T, s *stack.Stack, orderID string) orderv1.OrderStatus {
	t.Helper()
	for {
		resp, err := s.OrderClient().GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderID})
		if err != nil {
			t.Fatalf("GetOrder(%s): %v", orderID, err)
		}
		if terminal(resp.GetOrder().GetStatus()) {
			return resp.GetOrder().GetStatus()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("order %s not terminal: %s", orderID, resp.GetOrder().GetStatus())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func createREST(t *testing.T, s *stack.Stack, req *orderv1.CreateOrderRequest) string {
	t.Helper()
	body := fmt.Sprintf(`{"customer_id":%q,"payment_method":%q,"items":[{"product_id":%q,"quantity":%d,"unit_price":%q}],"shipping_address":{"country_code":"BR"}}`,
		req.GetCustomerId(), req.GetPaymentMethod(), req.GetItems()[0].GetProductId(), req.GetItems()[0].GetQuantity(), req.GetItems()[0].GetUnitPrice())
	resp, err := http.Post("http://"+s.OrderHTTP+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got orderv1.CreateOrderResponse
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/orders: %d %s", resp.StatusCode, b)
	}
	decode(t, b, &got)
	return got.GetOrder().GetOrderId()
}

// publishPoison publishes payment.failed for an order that does not exist, carrying
// traceparent, and returns its event id.
func publishPoison(ctx context.Context, t *testing.T, amqpURL, traceparent string) string {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	id := uuid.NewString()
	body, err := proto.Marshal(&paymentv1.PaymentFailed{EventId: id, OrderId: uuid.NewString(), OccurTime: timestamppb.Now(), Reason: "poison"})
	if err != nil {
		t.Fatal(err)
	}
	err = ch.PublishWithContext(ctx, catalog.Exchange(catalog.PaymentFailed), catalog.PaymentFailed, true, false, amqp.Publishing{
		Headers:      amqp.Table{"traceparent": traceparent},
		ContentType:  "application/x-protobuf",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Type:         catalog.MessageType(catalog.PaymentFailed),
		Timestamp:    time.Now(),
		Body:         body,
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
