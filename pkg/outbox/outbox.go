// Package outbox is the transactional outbox: a handler adds the events it publishes in the same
// transaction as its state change, and a Relay publishes them with publisher confirms.
package outbox

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/database"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the outbox table.
var Migrations = database.Migrations{Table: "goose_outbox_version", FS: database.Sub(migrations, "migrations")}

// Message is what every event of the catalog is: a proto message with the fields event_id,
// order_id and occur_time.
type Message interface {
	proto.Message
	GetOrderId() string
}

// New returns the event that announces msg under routingKey: msg gets a fresh time-ordered
// event id (index inserts stay local) and, when it has none, now as the time it occurred.
// It panics for a message without the catalog's fields, which catalog's tests rule out.
func New(routingKey string, msg Message) Event {
	id := uuid.Must(uuid.NewV7()).String()
	m := msg.ProtoReflect()
	fields := m.Descriptor().Fields()
	m.Set(fields.ByName("event_id"), protoreflect.ValueOfString(id))
	if at := fields.ByName("occur_time"); !m.Has(at) {
		m.Set(at, protoreflect.ValueOfMessage(timestamppb.Now().ProtoReflect()))
	}
	return Event{ID: id, OrderID: msg.GetOrderId(), RoutingKey: routingKey, Payload: msg}
}

// Event is one event to publish.
type Event struct {
	ID         string // event id, the message id
	OrderID    string // correlation id
	RoutingKey string // its exchange follows from it
	Payload    proto.Message
	// Trace is the span context the event continues, carried in its traceparent and
	// tracestate headers; none when invalid (tracing off, or nothing traced).
	Trace trace.SpanContext
}

// Row is an event written to the outbox: its row id and the message to publish.
type Row struct {
	ID  int64
	Msg broker.Message
}

// Encode turns events into the messages that carry them.
func Encode(events ...Event) ([]broker.Message, error) {
	msgs := make([]broker.Message, len(events))
	now := time.Now()
	for i, e := range events {
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: event id: %w", e.RoutingKey, err)
		}
		body, err := proto.Marshal(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", e.RoutingKey, err)
		}
		msgs[i] = broker.Message{
			Exchange:      catalog.Exchange(e.RoutingKey),
			RoutingKey:    e.RoutingKey,
			MessageID:     id.String(), // canonical, as the database returns it
			Type:          string(e.Payload.ProtoReflect().Descriptor().FullName()),
			CorrelationID: e.OrderID,
			Timestamp:     now,
			Headers:       broker.WithTraceContext(nil, e.Trace), // nil when untraced
			Body:          body,
		}
	}
	return msgs, nil
}

// Columns are messages as the arrays of one multi-row INSERT, for statements that write the
// outbox along with other rows: unnest($ids::text[]::uuid[], $exchanges::text[], $keys::text[],
// $types::text[], $orders::text[], $bodies::bytea[], $times::timestamptz[],
// $traceparents::text[], $tracestates::text[]). An untraced message has NULL trace columns.
type Columns struct {
	EventIDs, Exchanges, RoutingKeys, Types, CorrelationIDs []string
	Bodies                                                  [][]byte
	CreatedAt                                               []time.Time
	Traceparents, Tracestates                               []*string
}

// ColumnsOf spreads msgs into columns.
func ColumnsOf(msgs []broker.Message) Columns {
	n := len(msgs)
	c := Columns{make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([][]byte, n), make([]time.Time, n),
		make([]*string, n), make([]*string, n)}
	for i, m := range msgs {
		c.EventIDs[i], c.Exchanges[i], c.RoutingKeys[i], c.Types[i] = m.MessageID, m.Exchange, m.RoutingKey, m.Type
		c.CorrelationIDs[i], c.Bodies[i], c.CreatedAt[i] = m.CorrelationID, m.Body, m.Timestamp
		c.Traceparents[i], c.Tracestates[i] = header(m, broker.HeaderTraceparent), header(m, broker.HeaderTracestate)
	}
	return c
}

// header returns a string header of m, nil when it has none.
func header(m broker.Message, key string) *string {
	if v, ok := m.Headers[key].(string); ok && v != "" {
		return &v
	}
	return nil
}

// withTraceContext sets the traceparent and tracestate read from a row as m's headers.
func withTraceContext(m *broker.Message, traceparent, tracestate *string) {
	if traceparent == nil || *traceparent == "" {
		return
	}
	m.Headers = amqp.Table{broker.HeaderTraceparent: *traceparent}
	if tracestate != nil && *tracestate != "" {
		m.Headers[broker.HeaderTracestate] = *tracestate
	}
}

// Add writes events to the outbox through q, inside its transaction, in one statement, and
// returns the rows to hand to the relay once the transaction committed.
func Add(ctx context.Context, q database.Querier, events ...Event) ([]Row, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var out []Row
	b := &pgx.Batch{}
	if err := QueueAdd(b, &out, events...); err != nil {
		return nil, err
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("insert outbox: %w", err)
	}
	return out, nil
}

// QueueAdd is Add as a statement of batch b, for sending along with others (the COMMIT after
// it): once b has been sent, rows holds what was written. No events queue nothing.
func QueueAdd(b *pgx.Batch, rows *[]Row, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs, err := Encode(events...)
	if err != nil {
		return err
	}
	c := ColumnsOf(msgs)
	b.Queue(`
		INSERT INTO outbox (event_id, exchange, routing_key, message_type, correlation_id, body, created_at, traceparent, tracestate)
		SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::timestamptz[], $8::text[], $9::text[])
		RETURNING id, event_id::text`, c.EventIDs, c.Exchanges, c.RoutingKeys, c.Types, c.CorrelationIDs, c.Bodies, c.CreatedAt, c.Traceparents, c.Tracestates,
	).Query(func(r pgx.Rows) error {
		byEvent := make(map[string]int, len(msgs))
		for i, m := range msgs {
			byEvent[m.MessageID] = i
		}
		out := make([]Row, 0, len(msgs))
		var id int64
		var eventID string
		_, err := pgx.ForEachRow(r, []any{&id, &eventID}, func() error {
			out = append(out, Row{ID: id, Msg: msgs[byEvent[eventID]]})
			return nil
		})
		*rows = out
		return err
	})
	return nil
}
