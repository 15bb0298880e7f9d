package broker

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// Headers of the W3C trace context a message carries.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// OrderIDKey is the attribute naming the order a span is about.
const OrderIDKey = attribute.Key("ordersaga.order.id")

// SpanContext returns the trace context that headers carry, invalid when they carry none.
func SpanContext(h amqp.Table) trace.SpanContext {
	tp, _ := h[HeaderTraceparent].(string)
	if tp == "" {
		return trace.SpanContext{}
	}
	ts, _ := h[HeaderTracestate].(string)
	return ParseTraceContext(tp, ts)
}

// ParseTraceContext returns the remote span context of a W3C traceparent and tracestate,
// invalid when traceparent is empty or malformed.
func ParseTraceContext(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	c := propagation.MapCarrier{HeaderTraceparent: traceparent}
	if tracestate != "" {
		c[HeaderTracestate] = tracestate
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
}

// FormatTraceContext returns the W3C traceparent and tracestate of sc, empty when sc is invalid.
func FormatTraceContext(sc trace.SpanContext) (traceparent, tracestate string) {
	if !sc.IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return c[HeaderTraceparent], c[HeaderTracestate]
}

// WithTraceContext returns h (or a new table when h is nil) carrying sc as traceparent and
// tracestate. It returns h untouched when sc is invalid, so that untraced messages carry no
// headers at all.
func WithTraceContext(h amqp.Table, sc trace.SpanContext) amqp.Table {
	tp, ts := FormatTraceContext(sc)
	if tp == "" {
		return h
	}
	if h == nil {
		h = amqp.Table{}
	}
	h[HeaderTraceparent] = tp
	if ts != "" {
		h[HeaderTracestate] = ts
	} else {
		delete(h, HeaderTracestate)
	}
	return h
}

// messageAttributes are the semantic-convention attributes of a message's spans.
func messageAttributes(exchange, routingKey, messageID, orderID string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingDestinationName(exchange),
		semconv.MessagingRabbitMQDestinationRoutingKey(routingKey),
		semconv.MessagingMessageID(messageID),
		semconv.MessagingMessageConversationID(orderID),
		OrderIDKey.String(orderID),
	}
}

// startSend starts the producer span of one message as a child of the trace context it
// carries, and returns the message carrying the span's context instead. A message without
// trace context is returned as it is, with a nil span.
func startSend(ctx context.Context, m Message) (Message, trace.Span) {
	parent := SpanContext(m.Headers)
	if !parent.IsValid() {
		return m, nil
	}
	attrs := append(messageAttributes(m.Exchange, m.RoutingKey, m.MessageID, m.CorrelationID),
		semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish"))
	if reason, ok := m.Headers[HeaderReason].(string); ok {
		attrs = append(attrs, attribute.String("ordersaga.dead_letter.reason", reason))
	}
	_, span := telemetry.Tracer().Start(trace.ContextWithRemoteSpanContext(ctx, parent), "send "+m.RoutingKey,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	h := make(amqp.Table, len(m.Headers))
	for k, v := range m.Headers {
		h[k] = v
	}
	m.Headers = WithTraceContext(h, span.SpanContext())
	return m, span
}

// endSpan ends span, when there is one, as failed with err when err is not nil.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// startBatch starts the span of handling one batch of a queue: a new trace, linked to the trace
// context each delivery carries (the messaging conventions for a batch). Each event's own
// handling is a child of its message's context (see the unit of work). It returns ctx as it is
// and a nil span while tracing is off.
func startBatch(ctx context.Context, queue string, batch []amqp.Delivery) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, nil
	}
	var links []trace.Link
	for _, d := range batch {
		if sc := SpanContext(d.Headers); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
				semconv.MessagingMessageID(d.MessageId), OrderIDKey.String(d.CorrelationId),
			}})
		}
	}
	return telemetry.Tracer().Start(ctx, "process "+queue,
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingDestinationSubscriptionName(queue),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingBatchMessageCount(len(batch)),
		))
}

// StartHandle starts the span of handling one delivery of queue, a child of the trace context
// the delivery carries, linked to the span in ctx (its batch's). It returns a nil span while
// tracing is off or when the delivery carries no trace context.
func StartHandle(ctx context.Context, queue string, d amqp.Delivery) trace.Span {
	if !telemetry.Enabled() {
		return nil
	}
	parent := SpanContext(d.Headers)
	if !parent.IsValid() {
		return nil
	}
	attrs := append(messageAttributes(d.Exchange, d.RoutingKey, d.MessageId, d.CorrelationId),
		semconv.MessagingDestinationSubscriptionName(queue),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("handle"))
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if batch := trace.SpanContextFromContext(ctx); batch.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: batch}))
	}
	_, span := telemetry.Tracer().Start(trace.ContextWithRemoteSpanContext(ctx, parent), "handle "+d.RoutingKey, opts...)
	return span
}

// EndSpan ends span, when there is one, as failed with err when err is not nil.
func EndSpan(span trace.Span, err error) { endSpan(span, err) }
