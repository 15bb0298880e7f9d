package telemetry

import (
	"context"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// GRPCServerMetrics returns gRPC server metrics with handling-time histograms, registered on
// reg.
func GRPCServerMetrics(reg prometheus.Registerer) (*grpcprom.ServerMetrics, error) {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(0.0005, 2, 16)),
	))
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// GRPCMetricsInterceptors records m for every call, with the call's trace id as exemplar when
// it is traced, so that a slow bucket leads to one of its traces.
func GRPCMetricsInterceptors(m *grpcprom.ServerMetrics) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	exemplar := grpcprom.WithExemplarFromContext(exemplarFromContext)
	return m.UnaryServerInterceptor(exemplar), m.StreamServerInterceptor(exemplar)
}

func exemplarFromContext(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}
