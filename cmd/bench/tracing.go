package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// tracing is one setting of -tracing: off, or on with a sampling ratio.
type tracing struct {
	on    bool
	ratio float64
}

func (t tracing) String() string {
	if !t.on {
		return "tracing off"
	}
	return fmt.Sprintf("tracing %g%%", 100*t.ratio)
}

// parseTracing reads -tracing: settings separated by commas, each "off" or a sampling ratio in (0, 1].
func parseTracing(v string) ([]tracing, error) {
	var out []tracing
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "off" {
			out = append(out, tracing{})
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 || r > 1 {
			return nil, fmt.Errorf("bad tracing setting %q: want off or a sampling ratio in (0, 1]", s)
		}
		out = append(out, tracing{on: true, ratio: r})
	}
	return out, nil
}

// env is the services' environment for the setting, exporting to endpoint.
func (t tracing) env(endpoint string) map[string]string {
	if !t.on {
		return nil
	}
	return map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + endpoint,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     strconv.FormatFloat(t.ratio, 'g', -1, 64),
	}
}

// spanSink is an OTLP/gRPC trace receiver that counts the spans it is sent and drops them.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.spans.Add(n)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// serveSink serves a span sink on a free loopback port until stop is called.
func serveSink() (sink *spanSink, addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	sink = &spanSink{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, sink)
	go srv.Serve(lis)
	return sink, lis.Addr().String(), srv.Stop, nil
}
