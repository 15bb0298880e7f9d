package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/auth/authtest"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// TestPrismValidatesREST puts Stoplight Prism, a validating proxy written by others, in front
// of the REST facade (token checks on) and sends it the README's REST examples and every error
// the facade documents: 400, 401, 403, 404, 409, 413 and 503. Prism checks each request and
// response against the published OpenAPI 3 document and, with --errors, turns a mismatch into
// an error of its own: every answer must be the facade's, unchanged.
func TestPrismValidatesREST(t *testing.T) {
	t.Parallel()
	prism := needFile(t, "tools/prism/node_modules/.bin/prism")
	iss, err := authtest.NewIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	admin := iss.Token(authtest.Claims{Subject: "operator", Scopes: []string{auth.ScopeOrdersAdmin, auth.ScopeInventoryAdmin}})
	env := iss.Env()
	// The 503 below is CreateOrder's own bound running out: kept well inside the HTTP client's
	// timeout (outcomeTimeout), which the default bound equals.
	env["ORDER_CREATE_TIMEOUT"] = "5s"
	s := stack.Start(t, stack.Options{
		Env:         env,
		DialOptions: []grpc.DialOption{grpc.WithPerRPCCredentials(auth.Bearer{Token: admin, Insecure: true})},
	})

	addr := freeLocalAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	// --cors=false: Prism would otherwise add CORS headers of its own to every answer.
	out := startTool(t, repoFile(t, "."), nil, prism, "proxy", "--errors", "--cors=false", "--host", "127.0.0.1", "--port", port,
		repoFile(t, "gen/openapi/ordersaga.openapi3.json"), "http://"+s.OrderHTTP)
	waitListening(ctxT(t, 2*time.Minute), t, addr, out)

	const customer = "123e4567-e89b-12d3-a456-426614174000" // the README's
	readme := iss.Token(authtest.Claims{Subject: customer})
	stranger := iss.Token(authtest.Claims{Subject: uuid.NewString()})
	call := func(token, method, path, accept, body string, want int) []byte {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctxT(t, time.Minute), method, "http://"+addr+path, r)
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s through Prism: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s through Prism: %v", method, path, err)
		}
		if v := resp.Header.Get("sl-violations"); v != "" {
			t.Errorf("%s %s: Prism found violations: %s\n%s", method, path, v, b)
		}
		if resp.StatusCode != want || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s %s: %d %s, want %d from the facade\n%s", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), want, b)
		}
		return b
	}
	createBody := func(requestID string, quantity int) string {
		return fmt.Sprintf(`{"customer_id": %q, "payment_method": "credit_card",
			"items": [{"product_id": "00000000-0000-0000-0000-000000000001", "quantity": %d, "unit_price": "49.90"}],
			"shipping_address": {"country_code": "BR"}, "request_id": %q}`, customer, quantity, requestID)
	}

	// The README's REST examples.
	b := call(readme, "POST", "/v1/orders", "", createBody("readme-grpc-1", 2), http.StatusOK)
	id := jsonField(t, b, "order", "order_id")
	call(readme, "GET", "/v1/orders/"+id+":watch", "", "", http.StatusOK)
	call(readme, "GET", "/v1/orders/"+id+":watch", "text/event-stream", "", http.StatusOK)
	call(readme, "GET", "/v1/orders/"+id, "", "", http.StatusOK)
	call(readme, "GET", "/v1/orders?customer_id="+customer+"&page_size=10", "", "", http.StatusOK)
	call(readme, "POST", "/v1/orders", "", createBody("readme-grpc-1", 2), http.StatusOK) // the same request again
	call(readme, "POST", "/v1/orders", "", createBody("readme-grpc-1", 3), http.StatusConflict)
	call(readme, "POST", "/orders", "", `{"customer_id": "`+customer+`", "payment_method": "credit_card", "items": []}`, http.StatusBadRequest)
	// The seed's routes, and a watch that starts before the saga ends (several lines).
	b = call(readme, "POST", "/orders", "", createBody("", 1), http.StatusOK)
	seedID := jsonField(t, b, "order", "order_id")
	call(readme, "GET", "/v1/orders/"+seedID+":watch", "", "", http.StatusOK)
	call(readme, "GET", "/orders/"+seedID, "", "", http.StatusOK)

	// The errors.
	call(readme, "GET", "/v1/orders/not-a-uuid", "", "", http.StatusBadRequest)
	call(readme, "GET", "/v1/orders?page_size=-1&customer_id="+customer, "", "", http.StatusBadRequest)
	call(readme, "GET", "/v1/orders/"+uuid.NewString(), "", "", http.StatusNotFound)
	call(readme, "GET", "/v1/orders/"+uuid.NewString()+":watch", "", "", http.StatusNotFound)
	call("", "POST", "/v1/orders", "", createBody("", 1), http.StatusUnauthorized)
	call("not-a-token", "GET", "/v1/orders/"+id, "", "", http.StatusUnauthorized)
	call(stranger, "GET", "/v1/orders/"+id, "", "", http.StatusForbidden)
	call(stranger, "POST", "/v1/orders", "", createBody("", 1), http.StatusForbidden)
	// Valid for the document, too large for the facade.
	call(readme, "POST", "/v1/orders", "", createBody(strings.Repeat("k", 70<<10), 1), http.StatusRequestEntityTooLarge)

	// 503: the database refuses writes for longer than CreateOrder retries.
	dbName := databaseName(t, s.DatabaseURLs["order"])
	readOnly(t, dbName, true)
	t.Cleanup(func() { readOnly(t, dbName, false) })
	call(readme, "POST", "/v1/orders", "", createBody("readme-503", 1), http.StatusServiceUnavailable)
	readOnly(t, dbName, false)

	if strings.Contains(out.String(), "Violation") {
		t.Errorf("Prism logged violations:\n%s", out)
	}
}

// jsonField returns a string field of a JSON body, following the path of object keys.
func jsonField(t *testing.T, body []byte, path ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %v in %s", path, body)
		}
		v = m[k]
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("no string %v in %s", path, body)
	}
	return s
}

func databaseName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// readOnly makes every new transaction of the database read-only, or no longer, and ends its
// sessions so that the service's pool reconnects under the new default.
func readOnly(t *testing.T, dbName string, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	set := "SET default_transaction_read_only = on"
	if !on {
		set = "RESET default_transaction_read_only"
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{dbName}.Sanitize()+" "+set); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName); err != nil {
		t.Fatal(err)
	}
}
