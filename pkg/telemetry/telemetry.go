// Package telemetry sets up tracing the same way in every service: OpenTelemetry with the OTLP
// exporter, configured by the standard OTEL_* environment variables, and the W3C trace context
// that events carry from one service to the next.
//
// Without an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
// or with OTEL_SDK_DISABLED=true, tracing is off: the global tracer provider stays the no-op
// one, no propagator is installed, and no span context ever becomes valid, so the code that
// carries trace context skips its work.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of ordersaga's own spans.
const ScopeName = "github.com/ordersaga/ordersaga"

var enabled atomic.Bool

// Enabled reports whether Setup turned tracing on in this process.
func Enabled() bool { return enabled.Load() }

// Tracer returns the tracer of ordersaga's own spans (messaging, database), from the global
// provider: a no-op one while tracing is off.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// Setup turns tracing on for service when the environment names an OTLP endpoint, and returns
// the function that flushes what is left and stops it, within a bound (a no-op when tracing is
// off). OTEL_SERVICE_NAME, when set, overrides service as the resource's service.name; the
// sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), the batch processor (OTEL_BSP_*) and
// the exporter (OTEL_EXPORTER_OTLP_*, OTEL_EXPORTER_OTLP_PROTOCOL grpc or http/protobuf)
// follow their standard variables. Export failures are logged on log.
func Setup(ctx context.Context, service string, getenv func(string) string, log *slog.Logger) (stop func(), err error) {
	noop := func() {}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return noop, nil
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return noop, nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exporter sdktrace.SpanExporter
	switch protocol {
	case "", "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	// The service's own name first, so that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override it.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	enabled.Store(true)
	log.Info("tracing on", "resource", res.String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: flushing spans at stop failed", "err", err)
		}
	}, nil
}
