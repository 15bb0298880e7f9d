package grpcapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	const shop, other = "http://127.0.0.1:8099", "http://127.0.0.1:8100"
	listed := []string{shop, "https://shop.example.com"}
	for _, tc := range []struct {
		name    string
		origins []string
		method  string
		header  map[string]string
		// What the browser is told.
		status     int    // 0: what next answers (200)
		allow      string // Access-Control-Allow-Origin
		methods    string // Access-Control-Allow-Methods
		vary       bool   // Vary names Origin
		reachesAPI bool
	}{
		{name: "unset: no CORS headers", method: "GET", header: map[string]string{"Origin": shop}, reachesAPI: true},
		{name: "unset: OPTIONS goes to the API", method: "OPTIONS", header: map[string]string{"Origin": shop, "Access-Control-Request-Method": "POST"}, reachesAPI: true},
		{name: "listed origin", origins: listed, method: "POST", header: map[string]string{"Origin": shop}, allow: shop, vary: true, reachesAPI: true},
		{name: "second listed origin", origins: listed, method: "GET", header: map[string]string{"Origin": "https://shop.example.com"}, allow: "https://shop.example.com", vary: true, reachesAPI: true},
		{name: "unlisted origin", origins: listed, method: "POST", header: map[string]string{"Origin": other}, vary: true, reachesAPI: true},
		{name: "origin differing in case", origins: listed, method: "GET", header: map[string]string{"Origin": "https://SHOP.example.com"}, vary: true, reachesAPI: true},
		{name: "origin as a prefix", origins: listed, method: "GET", header: map[string]string{"Origin": "https://shop.example.com.evil.test"}, vary: true, reachesAPI: true},
		{name: "null origin", origins: listed, method: "GET", header: map[string]string{"Origin": "null"}, vary: true, reachesAPI: true},
		{name: "no origin (not a browser)", origins: listed, method: "GET", vary: true, reachesAPI: true},
		{
			name: "preflight, listed", origins: listed, method: "OPTIONS",
			header: map[string]string{"Origin": shop, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"},
			status: http.StatusNoContent, allow: shop, methods: corsMethods, vary: true,
		},
		{
			name: "preflight, unlisted", origins: listed, method: "OPTIONS",
			header: map[string]string{"Origin": other, "Access-Control-Request-Method": "POST"},
			status: http.StatusForbidden, vary: true,
		},
		{
			name: "preflight, method no route takes", origins: listed, method: "OPTIONS",
			header: map[string]string{"Origin": shop, "Access-Control-Request-Method": "DELETE"},
			status: http.StatusForbidden, vary: true,
		},
		{name: "OPTIONS that is no preflight", origins: listed, method: "OPTIONS", header: map[string]string{"Origin": shop}, allow: shop, vary: true, reachesAPI: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reached := false
			api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				reached = true
				w.WriteHeader(http.StatusOK)
			})
			r := httptest.NewRequest(tc.method, "/v1/orders", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			CORS(tc.origins, api).ServeHTTP(w, r)

			want := tc.status
			if want == 0 {
				want = http.StatusOK
			}
			if w.Code != want {
				t.Errorf("status %d, want %d", w.Code, want)
			}
			if reached != tc.reachesAPI {
				t.Errorf("reached the API: %v, want %v", reached, tc.reachesAPI)
			}
			h := w.Result().Header
			if got := h.Get("Access-Control-Allow-Origin"); got != tc.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.allow)
			}
			if got := h.Get("Access-Control-Allow-Methods"); got != tc.methods {
				t.Errorf("Access-Control-Allow-Methods %q, want %q", got, tc.methods)
			}
			if got := slices.Contains(h.Values("Vary"), "Origin"); got != tc.vary {
				t.Errorf("Vary %q: names Origin %v, want %v", h.Values("Vary"), got, tc.vary)
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials granted: the API takes none")
			}
			if len(tc.origins) == 0 {
				for k := range h {
					if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
						t.Errorf("CORS unset, yet %s: %q", k, h.Values(k))
					}
				}
			}
			if tc.methods != "" {
				for _, name := range []string{"Content-Type", "Authorization", "Last-Event-ID"} {
					if !strings.Contains(h.Get("Access-Control-Allow-Headers"), name) {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), name)
					}
				}
			}
		})
	}
}

// TestGatewayCORS checks that the grant covers what the gateway serves beside the API: the
// OpenAPI documents and the 413 refused before the API sees the body.
func TestGatewayCORS(t *testing.T) {
	t.Parallel()
	const shop = "http://127.0.0.1:8099"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// No gRPC server is needed: the connection is dialed on first use, which these calls never make.
	gw, err := Gateway(ctx, "127.0.0.1:1", GatewayOptions{AllowedOrigins: []string{shop}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/openapi.json", nil),
		httptest.NewRequest("GET", "/openapi3.json", nil),
		httptest.NewRequest("POST", "/v1/orders", strings.NewReader(strings.Repeat(" ", MaxRequestBytes+1))),
	} {
		r.Header.Set("Origin", shop)
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		if w.Code != http.StatusOK && w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s: %d", r.Method, r.URL, w.Code)
		}
		if got := w.Result().Header.Get("Access-Control-Allow-Origin"); got != shop {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q, want %q", r.Method, r.URL, got, shop)
		}
	}
}
