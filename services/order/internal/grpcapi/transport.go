package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ordersaga/ordersaga/gen/openapi"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// MaxRequestBytes bounds a REST body as the gRPC server bounds a message: a larger one is
// refused with 413 before it is read whole.
const MaxRequestBytes = server.MaxRequestBytes

// GatewayOptions tune the REST facade; the zero value is the default.
type GatewayOptions struct {
	// Heartbeat is how often an idle Server-Sent Events watch sends a comment (DefaultHeartbeat).
	Heartbeat time.Duration
	// Creds secure the hop to the gRPC server (nil: plaintext).
	Creds credentials.TransportCredentials
	// AllowedOrigins are the browser origins granted by CORS (none: no CORS headers).
	AllowedOrigins []string
}

// Gateway returns the REST facade: grpc-gateway forwarding to the gRPC server listening on
// grpcAddr (so that WatchOrder streams as newline-delimited JSON, or as Server-Sent Events to a
// client that asks for text/event-stream), and the OpenAPI document at GET /openapi.json
// (Swagger 2.0) and GET /openapi3.json (OpenAPI 3.0).
//
// JSON uses the proto field names (snake_case) and carries every field, zero values included;
// a message field is left out when unset (shipping_address), never null. The Authorization
// header travels with each call as gRPC metadata. A body over MaxRequestBytes is refused with
// 413 before it is read whole. Browser pages of opts.AllowedOrigins are granted every route
// (CORS). The client connection closes when ctx ends.
func Gateway(ctx context.Context, grpcAddr string, opts GatewayOptions) (http.Handler, error) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Creds == nil {
		opts.Creds = insecure.NewCredentials()
	}
	marshaler := ndjsonStreams{&runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true, UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		},
	}}
	gw := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler), runtime.WithErrorHandler(httpError))
	conn, err := grpc.NewClient(dialTarget(grpcAddr), append(telemetry.GRPCDialOptions(), grpc.WithTransportCredentials(opts.Creds))...)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	if err := orderv1.RegisterOrderServiceHandler(ctx, gw, conn); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	mux := http.NewServeMux()
	serve := func(doc []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(doc)
		}
	}
	mux.HandleFunc("GET /openapi.json", serve(openapi.JSON))
	mux.HandleFunc("GET /openapi3.json", serve(openapi.JSON3))
	mux.Handle("/", limitBody(&eventStreamWatch{
		next:      gw,
		gw:        gw,
		marshaler: marshaler,
		client:    orderv1.NewOrderServiceClient(conn),
		heartbeat: opts.Heartbeat,
	}))
	return telemetry.HTTPHandler(CORS(opts.AllowedOrigins, mux), "rest"), nil
}

// ndjsonStreams labels a server stream as what it is, one JSON object per line
// (application/x-ndjson): as application/json, which the whole body is not, a client or
// validating proxy that parses by media type fails on the second line.
type ndjsonStreams struct{ *runtime.HTTPBodyMarshaler }

// StreamContentType implements runtime.StreamContentType.
func (ndjsonStreams) StreamContentType(any) string { return "application/x-ndjson" }

// limitBody refuses a body longer than MaxRequestBytes: at once when its length is declared,
// otherwise as soon as reading passes the limit (then httpError answers 413).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequestBytes {
			writeTooLarge(w)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, MaxRequestBytes)}
		}
		next.ServeHTTP(w, r)
	})
}

// limitedBody remembers that the body passed the limit, for httpError.
type limitedBody struct {
	io.ReadCloser
	exceeded bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.exceeded = true
	}
	return n, err
}

func writeTooLarge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	fmt.Fprintf(w, `{"code":%d,"message":"request body must be at most %d bytes","details":[]}`+"\n",
		codes.InvalidArgument, MaxRequestBytes)
}

// httpError is the gateway's error handler: grpc-gateway's mapping of codes to HTTP, with 413
// for a body over the limit and a Bearer challenge with 401.
func httpError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if b, ok := r.Body.(*limitedBody); ok && b.exceeded {
		writeTooLarge(w)
		return
	}
	if status.Code(err) == codes.Unauthenticated {
		// grpc-gateway puts the status message in WWW-Authenticate; a client expects a challenge.
		challenge := `Bearer realm="ordersaga"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w = &challengeWriter{ResponseWriter: w, challenge: challenge}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// challengeWriter sets WWW-Authenticate as the 401 goes out.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (c *challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", c.challenge)
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// dialTarget turns a listen address such as ":50051" into one this process can dial.
func dialTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
