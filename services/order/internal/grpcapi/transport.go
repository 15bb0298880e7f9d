package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

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
)

// NewGRPCServer returns a gRPC server with svc, health (SERVING), reflection, request metrics
// recorded in metrics, and panics turned into INTERNAL errors.
func NewGRPCServer(svc orderv1.OrderServiceServer, metrics *grpcprom.ServerMetrics, log *slog.Logger) *grpc.Server {
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
		return status.Error(codes.Internal, "internal error")
	})
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor(), recovery.UnaryServerInterceptor(onPanic)),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor(), recovery.StreamServerInterceptor(onPanic)),
	)
	orderv1.RegisterOrderServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(orderv1.OrderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	metrics.InitializeMetrics(srv)
	return srv
}

// Gateway returns the REST facade: grpc-gateway forwarding to the gRPC server listening on
// grpcAddr (so that WatchOrder streams as newline-delimited JSON), and GET /openapi.json.
// JSON uses the proto field names (snake_case). The client connection closes when ctx ends.
func Gateway(ctx context.Context, grpcAddr string) (http.Handler, error) {
	gw := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		},
	}))
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if err := orderv1.RegisterOrderServiceHandlerFromEndpoint(ctx, gw, dialTarget(grpcAddr), opts); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openapi.JSON)
	})
	mux.Handle("/", gw)
	return mux, nil
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
