-- +goose Up
-- The W3C trace context of the span that wrote the event (NULL when untraced): the relay
-- publishes it in the traceparent and tracestate headers, so that one order is one trace.
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- +goose Down
ALTER TABLE outbox DROP COLUMN traceparent, DROP COLUMN tracestate;
