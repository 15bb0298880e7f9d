// Package outbox is the transactional outbox: a handler adds the events it publishes in the same
// transaction as its state change, and a Relay publishes them with publisher confirms.
package outbox

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/database"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the outbox table.
var Migrations = database.Migrations{Table: "goose_outbox_version", FS: database.Sub(migrations, "migrations")}

// Event is one event to publish.
type Event struct {
	ID         string // event id, the message id
	OrderID    string // correlation id
	RoutingKey string // its exchange follows from it
	Payload    proto.Message
}

// Add writes events to the outbox within tx, in one statement.
func Add(ctx context.Context, tx pgx.Tx, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	ids, exchanges, keys, types, orders := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	bodies := make([][]byte, n)
	for i, e := range events {
		body, err := proto.Marshal(e.Payload)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", e.RoutingKey, err)
		}
		ids[i], exchanges[i], keys[i], orders[i], bodies[i] = e.ID, broker.ExchangeFor(e.RoutingKey), e.RoutingKey, e.OrderID, body
		types[i] = string(e.Payload.ProtoReflect().Descriptor().FullName())
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO outbox (event_id, exchange, routing_key, message_type, correlation_id, body)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])`,
		ids, exchanges, keys, types, orders, bodies)
	if err != nil {
		return fmt.Errorf("insert outbox: %w", err)
	}
	return nil
}

type row struct {
	id            int64
	eventID       string
	exchange      string
	routingKey    string
	messageType   string
	correlationID string
	body          []byte
	createdAt     time.Time
}

func (r row) message() broker.Message {
	return broker.Message{
		Exchange:      r.exchange,
		RoutingKey:    r.routingKey,
		MessageID:     r.eventID,
		Type:          r.messageType,
		CorrelationID: r.correlationID,
		Timestamp:     r.createdAt,
		Body:          r.body,
	}
}
