package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// storefront is a page that places an order on the REST facade from its own origin with
// fetch() and follows it with EventSource, then reports what the browser let it see to the
// server that served it (its own origin, so that reporting needs no grant) and goes on to next.
const storefront = `<!doctype html>
<html><head><meta charset="utf-8"><title>storefront</title></head><body><pre id="out">running</pre>
<script>
const api = %q, customer = %q, next = %q;
const terminal = ["ORDER_STATUS_CONFIRMED", "ORDER_STATUS_PAYMENT_FAILED", "ORDER_STATUS_CANCELLED"];
function watch(id) {
  return new Promise((resolve) => {
    const seen = [];
    const es = new EventSource(api + "/v1/orders/" + id + ":watch");
    const end = (why) => { es.close(); resolve({statuses: seen, end: why}); };
    es.onmessage = (e) => {
      const status = JSON.parse(e.data).order.status;
      seen.push(status);
      if (terminal.includes(status)) end("terminal");
    };
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) end("closed"); };
    setTimeout(() => end("timeout"), 30000);
  });
}
(async () => {
  const result = {origin: location.origin};
  try {
    const resp = await fetch(api + "/v1/orders", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({customer_id: customer, payment_method: "credit_card",
        items: [{product_id: "00000000-0000-0000-0000-000000000001", quantity: 1, unit_price: "9.90"}]}),
    });
    result.create_status = resp.status;
    result.order_id = (await resp.json()).order.order_id;
    Object.assign(result, await watch(result.order_id));
  } catch (e) {
    result.error = e.name + ": " + e.message;
    Object.assign(result, await watch("00000000-0000-4000-8000-000000000000"));
  }
  document.getElementById("out").textContent = JSON.stringify(result);
  await fetch("/result", {method: "POST", body: JSON.stringify(result)});
  if (next) location.href = next;
})();
</script></body></html>
`

// pageResult is what a storefront page reports.
type pageResult struct {
	Origin       string   `json:"origin"`
	CreateStatus int      `json:"create_status"`
	OrderID      string   `json:"order_id"`
	Statuses     []string `json:"statuses"`
	End          string   `json:"end"`
	Error        string   `json:"error"`
}

// servePage serves the storefront on l and returns the channel its report arrives on.
func servePage(t *testing.T, l net.Listener, api, customer, next string) <-chan pageResult {
	t.Helper()
	results := make(chan pageResult, 1)
	page := fmt.Sprintf(storefront, api, customer, next)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		var res pageResult
		if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
			t.Errorf("page report: %v", err)
		}
		select {
		case results <- res:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return results
}

// TestBrowserStorefront drives headless Chromium through a storefront page served from an
// origin that ORDER_CORS_ALLOWED_ORIGINS lists: it places an order with fetch() and follows it
// with EventSource to CONFIRMED. Then the same page from an origin not listed: the browser
// blocks the call (the preflight is refused), and no order is placed.
func TestBrowserStorefront(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("drives Chromium against a running stack")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run make web-tools (%v)", err)
	}
	granted, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grantedURL, refusedURL := "http://"+granted.Addr().String(), "http://"+refused.Addr().String()
	s := stack.Start(t, stack.Options{Env: map[string]string{"ORDER_CORS_ALLOWED_ORIGINS": "https://shop.example.com, " + grantedURL}})
	api := "http://" + s.OrderHTTP

	shopper, stranger := uuid.NewString(), uuid.NewString()
	grantedResult := servePage(t, granted, api, shopper, refusedURL+"/")
	refusedResult := servePage(t, refused, api, stranger, "")

	out := startTool(t, t.TempDir(), nil, chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--user-data-dir="+t.TempDir(),
		grantedURL+"/")
	wait := func(results <-chan pageResult, which string) pageResult {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(2 * time.Minute):
			t.Fatalf("the %s page reported nothing; chromium said:\n%s", which, out)
			return pageResult{}
		}
	}

	g := wait(grantedResult, "granted")
	t.Logf("granted origin %s: %+v", g.Origin, g)
	if g.Error != "" || g.CreateStatus != http.StatusOK || g.OrderID == "" {
		t.Errorf("from %s: create %d, order %q, error %q; want the order placed", grantedURL, g.CreateStatus, g.OrderID, g.Error)
	}
	if g.End != "terminal" || len(g.Statuses) == 0 || g.Statuses[len(g.Statuses)-1] != "ORDER_STATUS_CONFIRMED" {
		t.Errorf("from %s: EventSource saw %v and ended %q; want it to follow the order to CONFIRMED", grantedURL, g.Statuses, g.End)
	}

	r := wait(refusedResult, "refused")
	t.Logf("refused origin %s: %+v", r.Origin, r)
	if !strings.HasPrefix(r.Error, "TypeError") || r.CreateStatus != 0 || r.OrderID != "" {
		t.Errorf("from %s: create %d, order %q, error %q; want the browser to block the call (TypeError)", refusedURL, r.CreateStatus, r.OrderID, r.Error)
	}
	if r.End != "closed" || len(r.Statuses) != 0 {
		t.Errorf("from %s: EventSource saw %v and ended %q; want the browser to close it unread", refusedURL, r.Statuses, r.End)
	}
	listed, err := s.OrderClient().ListOrders(ctxT(t, 10*time.Second), &orderv1.ListOrdersRequest{CustomerId: stranger})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(listed.GetOrders()); n > 0 {
		t.Errorf("the refused page placed %d order(s): its preflight must stop the call", n)
	}
}
