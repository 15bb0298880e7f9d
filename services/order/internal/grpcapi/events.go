package grpcapi

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

// DefaultHeartbeat is how often an idle Server-Sent Events stream sends a comment line, so that
// proxies and browsers keep the connection open.
const DefaultHeartbeat = 15 * time.Second

const (
	watchPrefix = "/v1/orders/"
	watchSuffix = ":watch"
	eventStream = "text/event-stream"
)

// eventStreamWatch answers GET /v1/orders/{order_id}:watch with Server-Sent Events when the
// client prefers text/event-stream (a browser's EventSource does), and hands every other request
// to next: the gateway, whose watch streams newline-delimited JSON.
//
// Each status change is one event: its data the JSON WatchOrderResponse, its id the number of
// history entries the order has then. A reconnect with Last-Event-ID skips what the client saw,
// and gets 204 No Content once the order is terminal and seen, which ends EventSource's retries.
// A failure before the first event is an ordinary JSON error response with its HTTP status; after
// it, an event named "error" carrying the google.rpc.Status.
type eventStreamWatch struct {
	next      http.Handler
	gw        *runtime.ServeMux
	marshaler runtime.Marshaler
	client    orderv1.OrderServiceClient
	heartbeat time.Duration
}

func (h *eventStreamWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, watchPrefix)
	if ok {
		id, ok = strings.CutSuffix(id, watchSuffix)
	}
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") || !prefersEventStream(r.Header.Values("Accept")) {
		h.next.ServeHTTP(w, r)
		return
	}
	ctx, err := runtime.AnnotateContext(r.Context(), h.gw, r, "/order.v1.OrderService/WatchOrder",
		runtime.WithHTTPPathPattern("/v1/orders/{order_id}:watch"))
	if err != nil {
		runtime.HTTPError(r.Context(), h.gw, h.marshaler, w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := -1
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			seen = n
		}
	}

	stream, err := h.client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		runtime.HTTPError(ctx, h.gw, h.marshaler, w, r, err)
		return
	}
	type received struct {
		resp *orderv1.WatchOrderResponse
		err  error
	}
	updates := make(chan received)
	go func() {
		for {
			resp, err := stream.Recv()
			select {
			case updates <- received{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		w.Header().Set("Content-Type", eventStream)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		w.WriteHeader(http.StatusOK)
		flush()
	}
	heartbeat := time.NewTicker(h.heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if !started {
				continue // the first read answers at once; nothing to keep alive yet
			}
			if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
				return
			}
			flush()
		case u := <-updates:
			if errors.Is(u.err, io.EOF) {
				if !started {
					// Terminal, and the client saw it already: stop EventSource's reconnects.
					w.WriteHeader(http.StatusNoContent)
				}
				return
			}
			if u.err != nil {
				if !started {
					runtime.HTTPError(ctx, h.gw, h.marshaler, w, r, u.err)
					return
				}
				h.event(w, "error", "", status.Convert(u.err).Proto())
				flush()
				return
			}
			n := len(u.resp.GetOrder().GetHistory())
			if n <= seen {
				// Seen before the reconnect. Answer now unless the order is terminal: then the
				// stream ends next, with 204.
				if st, ok := fromProtoStatus(u.resp.GetOrder().GetStatus()); !ok || !st.Terminal() {
					start()
				}
				continue
			}
			start()
			if !h.event(w, "", strconv.Itoa(n), u.resp) {
				return
			}
			flush()
			heartbeat.Reset(h.heartbeat)
		}
	}
}

// event writes one event; it reports false when the client is gone.
func (h *eventStreamWatch) event(w io.Writer, name, id string, m proto.Message) bool {
	data, err := h.marshaler.Marshal(m)
	if err != nil {
		data = []byte(`{"code": 13, "message": "failed to marshal the event"}`)
	}
	var b strings.Builder
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	_, err = io.WriteString(w, b.String())
	return err == nil
}

// prefersEventStream reports whether the Accept header values rank text/event-stream above every
// other type they name (wildcards included), so that NDJSON stays the default.
func prefersEventStream(accept []string) bool {
	best, other := -1.0, -1.0
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil {
					q = f
				}
			}
			if mt == eventStream {
				best = max(best, q)
			} else {
				other = max(other, q)
			}
		}
	}
	return best > 0 && best > other
}
