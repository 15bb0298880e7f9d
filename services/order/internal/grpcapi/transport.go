package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ordersaga/ordersaga/gen/openapi"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// NewGRPCServer returns a gRPC server with svc, health (SERVING), reflection, request metrics
// recorded in metrics, and panics turned into INTERNAL errors.
func NewGRPCServer(svc orderv1.OrderServiceServer, metrics *grpcprom.ServerMetrics, log *slog.Logger) *grpc.Server {
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
		return status.Error(codes.Internal, "internal error")
	})
	srv := grpc.NewServer(append(telemetry.GRPCServerOptions(),
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor(), recovery.UnaryServerInterceptor(onPanic)),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor(), recovery.StreamServerInterceptor(onPanic)),
	)...)
	orderv1.RegisterOrderServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(orderv1.OrderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	metrics.InitializeMetrics(srv)
	return srv
}

// GatewayOptions tune the REST facade; the zero value is the default.
type GatewayOptions struct {
	// Heartbeat is how often an idle Server-Sent Events watch sends a comment (DefaultHeartbeat).
	Heartbeat time.Duration
}

// Gateway returns the REST facade: grpc-gateway forwarding to the gRPC server listening on
// grpcAddr (so that WatchOrder streams as newline-delimited JSON, or as Server-Sent Events to a
// client that asks for text/event-stream), and the OpenAPI document at GET /openapi.json
// (Swagger 2.0) and GET /openapi3.json (OpenAPI 3.0).
//
// JSON uses the proto field names (snake_case) and carries every field, zero values included;
// a message field is left out when unset (shipping_address), never null. The client connection
// closes when ctx ends.
func Gateway(ctx context.Context, grpcAddr string, opts GatewayOptions) (http.Handler, error) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	marshaler := &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true, UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		},
	}
	gw := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler))
	conn, err := grpc.NewClient(dialTarget(grpcAddr),
		append(telemetry.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
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
	mux.Handle("/", &eventStreamWatch{
		next:      gw,
		gw:        gw,
		marshaler: marshaler,
		client:    orderv1.NewOrderServiceClient(conn),
		heartbeat: opts.Heartbeat,
	})
	return telemetry.HTTPHandler(mux, "rest"), nil
}

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
