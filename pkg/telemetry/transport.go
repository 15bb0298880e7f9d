package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
)

// untraced are the calls not worth a trace: health checks and reflection.
var untraced = filters.Not(filters.Any(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection.")))

// GRPCServerOptions returns the options that trace a gRPC server's calls (otelgrpc as a stats
// handler), none while tracing is off.
func GRPCServerOptions() []grpc.ServerOption {
	if !Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(untraced)))}
}

// GRPCDialOptions returns the options that trace a gRPC client's calls and pass the trace
// context on, none while tracing is off.
func GRPCDialOptions() []grpc.DialOption {
	if !Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithFilter(untraced)))}
}

// HTTPHandler returns h traced with otelhttp under the server name operation, or h itself
// while tracing is off.
func HTTPHandler(h http.Handler, operation string) http.Handler {
	if !Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, operation, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		// The route when the mux has a specific one; the gateway's routes show in the
		// child gRPC span's name.
		if r.Pattern != "" && r.Pattern != "/" {
			return r.Method + " " + r.Pattern
		}
		return r.Method
	}))
}
