package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/ordersaga/ordersaga/gen/openapi"
)

// The published OpenAPI 3 document, made strict for the tests: an object in a response may hold
// only the properties the document declares, so that validation catches an undocumented field.
var restDoc = sync.OnceValues(func() (*openapiDoc, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON3)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI 3 document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI 3 document is invalid: %w", err)
	}
	no := false
	for _, s := range doc.Components.Schemas {
		if v := s.Value; v.Type.Is(openapi3.TypeObject) && len(v.Properties) > 0 &&
			v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
			v.AdditionalProperties.Has = &no
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openapiDoc{T: doc, router: router}, nil
})

type openapiDoc struct {
	*openapi3.T
	router routers.Router
}

// servesDocuments are the facade's routes that serve the document itself.
var servesDocuments = []string{"/openapi.json", "/openapi3.json"}

// validateREST checks one response of the REST facade against the published document with
// kin-openapi: status, content type, and body. The newline-delimited JSON of WatchOrder is
// checked line by line against the schema of one stream item (WatchOrderStreamItem).
func validateREST(t *testing.T, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if slices.Contains(servesDocuments, req.URL.Path) {
		return
	}
	doc, err := restDoc()
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := doc.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if route.Operation.OperationID == "WatchOrder" && status == http.StatusOK {
		if ct := header.Get("Content-Type"); route.Operation.Responses.Status(http.StatusOK).Value.Content.Get(ct) == nil {
			t.Errorf("%s %s: stream of media type %q, which the document does not declare", req.Method, req.URL.Path, ct)
		}
		schema := doc.Components.Schemas["WatchOrderStreamItem"].Value
		for line := range bytes.Lines(body) {
			if line = bytes.TrimSpace(line); len(line) == 0 {
				continue
			}
			var v any
			if err := json.Unmarshal(line, &v); err != nil {
				t.Errorf("%s %s: stream line is not JSON: %v: %s", req.Method, req.URL.Path, err, line)
				continue
			}
			if err := schema.VisitJSON(v, openapi3.MultiErrors()); err != nil {
				t.Errorf("%s %s: stream line does not match the document: %v\n%s", req.Method, req.URL.Path, err, line)
			}
		}
		return
	}
	err = openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	})
	if err != nil {
		t.Errorf("%s %s: %d response does not match the OpenAPI document: %v\n%s", req.Method, req.URL.Path, status, err, body)
	}
}

// validatingTransport validates every response that passes through it, for clients that do not
// go through rest().
type validatingTransport struct {
	t    *testing.T
	next http.RoundTripper
}

func (v validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	validateREST(v.t, req, resp.StatusCode, resp.Header, body)
	return resp, nil
}

// TestOpenAPIDocument checks what the document promises its readers, beyond being valid.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc, err := restDoc()
	if err != nil {
		t.Fatal(err)
	}
	if doc.Info.Title == "" || strings.HasSuffix(doc.Info.Title, ".proto") {
		t.Errorf("title %q", doc.Info.Title)
	}
	// MAJOR follows the proto package version, order.v1.
	if !strings.HasPrefix(doc.Info.Version, "1.") {
		t.Errorf("version %q does not follow order.v1", doc.Info.Version)
	}
	seen := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" || seen[op.OperationID] || len(op.Tags) == 0 || op.Summary == "" || op.Description == "" {
				t.Errorf("%s: operation id %q (unique: %v), tags %v, summary %q, description %d bytes",
					where, op.OperationID, !seen[op.OperationID], op.Tags, op.Summary, len(op.Description))
			}
			seen[op.OperationID] = true
			if alias := !strings.HasPrefix(path, "/v1/"); alias != op.Deprecated || alias && op.Extensions["x-alias-of"] != method+" /v1"+path {
				t.Errorf("%s: deprecated %v, x-alias-of %v", where, op.Deprecated, op.Extensions["x-alias-of"])
			}
			for code, resp := range op.Responses.Map() {
				if code == "200" {
					continue
				}
				if ref := resp.Value.Content.Get("application/json").Schema.Ref; ref != "#/components/schemas/Status" {
					t.Errorf("%s: %s response is %s, want google.rpc.Status", where, code, ref)
				}
			}
		}
	}
	for _, op := range []string{"CreateOrder", "GetOrder", "ListOrders", "WatchOrder", "CreateOrderUnversioned", "GetOrderUnversioned"} {
		if !seen[op] {
			t.Errorf("no operation %s", op)
		}
	}
	// Field names are the proto names the gateway marshals; enums are strings.
	order := doc.Components.Schemas["Order"].Value
	for _, f := range []string{"order_id", "customer_id", "create_time", "history"} {
		if order.Properties[f] == nil {
			t.Errorf("Order has no property %s", f)
		}
	}
	if st := doc.Components.Schemas["OrderStatus"].Value; !st.Type.Is(openapi3.TypeString) || !slices.Contains(st.Enum, any("ORDER_STATUS_CONFIRMED")) {
		t.Errorf("OrderStatus is %v %v, want string names", st.Type, st.Enum)
	}
}
