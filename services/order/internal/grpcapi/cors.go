package grpcapi

import (
	"net/http"
	"slices"
)

// What a page of an allowed origin may do. The API takes no cookies: a client authenticates
// with an Authorization header, so credentials are never granted and no page acts with a
// browser's ambient authority.
const (
	corsMethods = "GET, POST"
	// Content-Type for a JSON body, Authorization for a bearer token, Last-Event-ID for an
	// EventSource that reconnects.
	corsHeaders = "Authorization, Content-Type, Last-Event-ID"
	// Readable by the page: the 401's challenge, what a browser withholds otherwise.
	corsExposed = "WWW-Authenticate"
	// How long a browser may reuse a preflight's answer, in seconds.
	corsMaxAge = "600"
)

// CORS grants the browser pages of the given origins (already in the form a browser sends,
// ORDER_CORS_ALLOWED_ORIGINS) the routes of next: each response to a listed Origin names that origin, and a
// preflight from it is answered here with 204. An unlisted origin gets no grant (its preflight
// 403), so the browser keeps the page from the call. With no origins, next is returned as it
// is: no CORS headers at all.
func CORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := slices.Clone(origins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin: a cache must not give one origin's grant to another.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		if origin == "" || !slices.Contains(allowed, origin) {
			if preflight {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r) // not a browser's cross-origin call, or no grant for it
			return
		}
		if !preflight {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExposed)
			next.ServeHTTP(w, r)
			return
		}
		if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodGet && m != http.MethodPost {
			w.WriteHeader(http.StatusForbidden) // no route takes another method
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	})
}
