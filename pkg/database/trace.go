package database

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// queryTracer makes a client span of each query and batch, with the database semantic
// conventions. Only work already traced gets database spans: a query outside a recording span
// (the relay's poll, readiness checks, an unsampled order) costs one context lookup.
type queryTracer struct {
	database string
}

var (
	_ pgx.QueryTracer = queryTracer{}
	_ pgx.BatchTracer = queryTracer{}
)

func (t queryTracer) start(ctx context.Context, sql string, extra ...trace.SpanStartOption) context.Context {
	op := operation(sql)
	opts := append([]trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.DBSystemNamePostgreSQL,
			semconv.DBNamespace(t.database),
			semconv.DBOperationName(op),
			semconv.DBQueryText(sql),
		),
	}, extra...)
	ctx, _ = telemetry.Tracer().Start(ctx, op+" "+t.database, opts...)
	return ctx
}

func end(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// TraceQueryStart implements pgx.QueryTracer.
func (t queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	return t.start(ctx, data.SQL)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	end(ctx, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (t queryTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	n := 0
	if data.Batch != nil {
		n = data.Batch.Len()
	}
	ctx, _ = telemetry.Tracer().Start(ctx, "BATCH "+t.database,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBNamespace(t.database),
			semconv.DBOperationName("BATCH"), semconv.DBOperationBatchSize(n)))
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of the batch is an event of its span.
func (t queryTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent(operation(data.SQL), trace.WithAttributes(semconv.DBQueryText(data.SQL)))
	if data.Err != nil {
		span.RecordError(data.Err)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t queryTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	end(ctx, data.Err)
}

// operation is the first keyword of a statement, upper-case: SELECT, INSERT, WITH, BEGIN…
func operation(sql string) string {
	sql = strings.TrimSpace(sql)
	if i := strings.IndexFunc(sql, func(r rune) bool { return r == ' ' || r == '\n' || r == '\t' || r == '(' }); i > 0 {
		sql = sql[:i]
	}
	return strings.ToUpper(sql)
}
