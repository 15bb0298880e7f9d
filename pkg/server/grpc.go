package server

import (
	"context"
	"fmt"
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// Size limits of a gRPC request, enforced before it is read whole: a larger message is refused
// with RESOURCE_EXHAUSTED. The largest valid CreateOrderRequest (100 items, every text at its
// maximum) is about 25 KiB.
const (
	MaxRequestBytes  = 64 << 10
	MaxMetadataBytes = 64 << 10 // a bearer token included
)

// NewGRPC returns the gRPC server every service that serves gRPC uses: one interceptor chain,
// panic recovery first (a panic is INTERNAL, never a dead process), then request metrics on
// metrics (so that refused calls are counted too), then what opts add (token checks); the size
// limits; tracing; health on hs and reflection. register adds the service's APIs, each SERVING
// on hs until FollowReadiness says otherwise.
func NewGRPC(log *slog.Logger, metrics *grpcprom.ServerMetrics, hs *health.Server, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.Server {
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
		return status.Error(codes.Internal, "internal error")
	})
	unaryMetrics, streamMetrics := telemetry.GRPCMetricsInterceptors(metrics)
	base := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxHeaderListSize(MaxMetadataBytes),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(onPanic), unaryMetrics),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(onPanic), streamMetrics),
	}
	srv := grpc.NewServer(append(append(base, telemetry.GRPCServerOptions()...), opts...)...)
	register(srv)
	for _, name := range ServiceNames(srv) {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	metrics.InitializeMetrics(srv)
	return srv
}

// ServiceNames are the names srv's health reports on: "" (the server as a whole) and every API
// registered on it.
func ServiceNames(srv *grpc.Server) []string {
	names := []string{""}
	for name := range srv.GetServiceInfo() {
		names = append(names, name)
	}
	return names
}
