package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ordersaga/ordersaga/e2e/restclient"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// newRESTClient is the oapi-codegen client generated from the published document, on a
// transport that validates every response against it.
func newRESTClient(t *testing.T) *restclient.ClientWithResponses {
	t.Helper()
	hc := &http.Client{Timeout: outcomeTimeout, Transport: validatingTransport{t: t, next: http.DefaultTransport}}
	c, err := restclient.NewClientWithResponses("http://"+sys.OrderHTTP, restclient.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sameFields checks that a JSON value holds exactly the properties its schema declares, at
// every level: nothing the document leaves out, nothing it declares missing.
func sameFields(t *testing.T, where string, schema *openapi3.SchemaRef, v any) {
	t.Helper()
	s := schema.Value
	switch v := v.(type) {
	case map[string]any:
		if ap := s.AdditionalProperties; ap.Schema != nil || ap.Has != nil && *ap.Has {
			return // google.protobuf.Any: the rest depends on @type
		}
		for k := range v {
			if s.Properties[k] == nil {
				t.Errorf("%s.%s is sent but not in the document", where, k)
			}
		}
		for k, p := range s.Properties {
			if fv, ok := v[k]; !ok {
				t.Errorf("%s.%s is in the document but not sent", where, k)
			} else {
				sameFields(t, where+"."+k, p, fv)
			}
		}
	case []any:
		for i, e := range v {
			sameFields(t, where+"["+strconv.Itoa(i)+"]", s.Items, e)
		}
	}
}

func checkSameFields(t *testing.T, schemaName string, body []byte) {
	t.Helper()
	doc, err := restDoc()
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v: %s", schemaName, err, body)
	}
	sameFields(t, schemaName, doc.Components.Schemas[schemaName], v)
}

// TestThirdPartyRESTClient drives the REST facade only through a client generated from the
// published OpenAPI document by a third-party generator: what it reads must be what was sent.
func TestThirdPartyRESTClient(t *testing.T) {
	t.Parallel()
	c := newRESTClient(t)
	ctx := ctxT(t, outcomeTimeout)
	p := product(t, 100)
	customer := uuid.NewString()
	str := func(s string) *string { return &s }
	req := restclient.CreateOrderJSONRequestBody{
		CustomerId:    customer,
		PaymentMethod: "credit_card",
		Items:         []restclient.LineItem{{ProductId: p, Quantity: 2, UnitPrice: "49.90"}},
		ShippingAddress: &restclient.ShippingAddress{
			Recipient: str("Ada"), Line1: str("1 Main St"), Line2: str("Apt 2"), City: str("Porto"),
			PostalCode: str("4000-001"), CountryCode: str("pt"),
		},
		RequestId: str("client-" + uuid.NewString()),
	}

	// Create: every field the server sends is one the client reads.
	created, err := c.CreateOrderWithResponse(ctx, req)
	if err != nil || created.StatusCode() != http.StatusOK || created.JSON200 == nil {
		t.Fatalf("create: %v %d %s", err, created.StatusCode(), created.Body)
	}
	checkSameFields(t, "CreateOrderResponse", created.Body)
	o := created.JSON200.Order
	if _, err := uuid.Parse(o.OrderId); err != nil || o.CustomerId != customer || o.PaymentMethod != "credit_card" ||
		o.Status != restclient.OrderStatus(orderv1.OrderStatus_ORDER_STATUS_PENDING.String()) || o.Total != "99.80" ||
		o.RequestId != *req.RequestId || o.CreateTime.IsZero() || o.UpdateTime.IsZero() ||
		len(o.Items) != 1 || o.Items[0] != req.Items[0] || len(o.History) != 1 || o.History[0].ChangeTime.IsZero() {
		t.Fatalf("created order as the client reads it: %+v\n%s", o, created.Body)
	}
	if a := o.ShippingAddress; a == nil || *a.City != "Porto" || *a.CountryCode != "PT" || *a.Line2 != "Apt 2" ||
		*a.PostalCode != "4000-001" || *a.Recipient != "Ada" || *a.Line1 != "1 Main St" {
		t.Errorf("address as the client reads it: %+v", a)
	}

	// The same key and request again: the same order. With another request: 409, nothing made.
	again, err := c.CreateOrderWithResponse(ctx, req)
	if err != nil || again.JSON200 == nil || again.JSON200.Order.OrderId != o.OrderId {
		t.Fatalf("repeat: %v %d %s", err, again.StatusCode(), again.Body)
	}
	changed := req
	changed.Items = []restclient.LineItem{{ProductId: p, Quantity: 3, UnitPrice: "49.90"}}
	conflict, err := c.CreateOrderWithResponse(ctx, changed)
	if err != nil || conflict.StatusCode() != http.StatusConflict || conflict.JSON409 == nil ||
		!strings.HasPrefix(*conflict.JSON409.Message, "request_id: ") || *conflict.JSON409.Code != 6 {
		t.Fatalf("same key, other request: %v %d %s", err, conflict.StatusCode(), conflict.Body)
	}
	checkSameFields(t, "Status", conflict.Body)

	// Get, through the versioned route and the seed's alias.
	got, err := c.GetOrderWithResponse(ctx, o.OrderId)
	if err != nil || got.JSON200 == nil || got.JSON200.Order.OrderId != o.OrderId || got.JSON200.Order.Total != "99.80" {
		t.Fatalf("get: %v %d %s", err, got.StatusCode(), got.Body)
	}
	checkSameFields(t, "GetOrderResponse", got.Body)
	//lint:ignore SA1019 the deprecated unversioned alias must keep working
	alias, err := c.GetOrderUnversionedWithResponse(ctx, o.OrderId)
	if err != nil || alias.JSON200 == nil || alias.JSON200.Order.OrderId != o.OrderId {
		t.Fatalf("get through the alias: %v %d %s", err, alias.StatusCode(), alias.Body)
	}

	// List with pagination: two more orders of the customer, pages of two.
	for range 2 {
		more := req
		more.RequestId = nil
		if r, err := c.CreateOrderWithResponse(ctx, more); err != nil || r.JSON200 == nil {
			t.Fatalf("create: %v %s", err, r.Body)
		}
	}
	var listed []string
	params := &restclient.ListOrdersParams{CustomerId: &customer, PageSize: new(int32)}
	*params.PageSize = 2
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("pagination does not end: %v", listed)
		}
		r, err := c.ListOrdersWithResponse(ctx, params)
		if err != nil || r.JSON200 == nil {
			t.Fatalf("list: %v %d %s", err, r.StatusCode(), r.Body)
		}
		checkSameFields(t, "ListOrdersResponse", r.Body)
		for _, lo := range r.JSON200.Orders {
			listed = append(listed, lo.OrderId)
		}
		if r.JSON200.NextPageToken == "" {
			break
		}
		params.PageToken = &r.JSON200.NextPageToken
	}
	unique := slices.Clone(listed)
	slices.Sort(unique)
	if len(listed) != 3 || listed[2] != o.OrderId || len(slices.Compact(unique)) != 3 {
		t.Errorf("listed %v, want three different orders, the first created last", listed)
	}

	// A validation error names the field, in the message and in a BadRequest detail.
	bad := req
	bad.CustomerId = "not-a-uuid"
	bad.RequestId = nil
	invalid, err := c.CreateOrderWithResponse(ctx, bad)
	if err != nil || invalid.StatusCode() != http.StatusBadRequest || invalid.JSON400 == nil ||
		!strings.HasPrefix(*invalid.JSON400.Message, "customer_id: ") || invalid.JSON400.Details == nil {
		t.Fatalf("invalid: %v %d %s", err, invalid.StatusCode(), invalid.Body)
	}
	checkSameFields(t, "Status", invalid.Body)
	detail := (*invalid.JSON400.Details)[0]
	if typ := detail.Type; typ == nil || *typ != "type.googleapis.com/google.rpc.BadRequest" ||
		!strings.Contains(string(mustJSON(t, detail.AdditionalProperties)), `"field":"customer_id"`) {
		t.Errorf("invalid: detail %s", mustJSON(t, detail))
	}

	// Not found.
	missing, err := c.GetOrderWithResponse(ctx, uuid.NewString())
	if err != nil || missing.StatusCode() != http.StatusNotFound || missing.JSON404 == nil || *missing.JSON404.Code != 5 {
		t.Fatalf("unknown order: %v %d %s", err, missing.StatusCode(), missing.Body)
	}
	checkSameFields(t, "Status", missing.Body)

	// Watch, once terminal: one line of newline-delimited JSON, a WatchOrderStreamItem.
	waitTerminal(t, o.OrderId)
	watched, err := c.WatchOrderWithResponse(ctx, o.OrderId)
	if err != nil || watched.StatusCode() != http.StatusOK || watched.HTTPResponse.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("watch: %v %d %v %s", err, watched.StatusCode(), watched.HTTPResponse.Header, watched.Body)
	}
	var item restclient.WatchOrderStreamItem
	if err := json.Unmarshal(bytes.TrimSpace(watched.Body), &item); err != nil || item.Result == nil ||
		item.Result.Order.Status != restclient.OrderStatus(orderv1.OrderStatus_ORDER_STATUS_CONFIRMED.String()) {
		t.Fatalf("watch: %v %s", err, watched.Body)
	}
	if !strings.HasPrefix(item.Result.Order.TrackingCode, "TRK-") {
		t.Errorf("tracking code %q", item.Result.Order.TrackingCode)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWatchOrderEventStreamREST follows an order from order-service's REST port with an SSE client
// that behaves like a browser's EventSource: it ends at CONFIRMED without repeating an event.
func TestWatchOrderEventStreamREST(t *testing.T) {
	t.Parallel()
	id := create(t, orderReq(product(t, 10), 1, "3.00")).GetOrderId()
	ctx := ctxT(t, outcomeTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sys.OrderHTTP+"/v1/orders/"+id+":watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &sse.Client{Backoff: sse.Backoff{InitialInterval: 20 * time.Millisecond, MaxRetries: 3}}
	conn := client.NewConnection(req)
	var (
		statuses []orderv1.OrderStatus
		ids      []string
	)
	conn.SubscribeMessages(func(ev sse.Event) {
		var w orderv1.WatchOrderResponse
		if err := protojson.Unmarshal([]byte(ev.Data), &w); err != nil {
			t.Errorf("event data %q: %v", ev.Data, err)
			return
		}
		statuses = append(statuses, w.GetOrder().GetStatus())
		ids = append(ids, ev.LastEventID)
	})
	err = conn.Connect()
	var cerr *sse.ConnectionError
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "204") {
		t.Fatalf("Connect ended with %v, want the 204 that ends it (statuses %v)", err, statuses)
	}
	checkWatched(t, statuses)
	for i := 1; i < len(ids); i++ {
		a, _ := strconv.Atoi(ids[i-1])
		b, _ := strconv.Atoi(ids[i])
		if b <= a {
			t.Errorf("event ids %v do not increase", ids)
		}
	}
}
