package ops

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Registered so that dead letters of every event type decode.
	_ "github.com/ordersaga/ordersaga/gen/inventory/v1"
	_ "github.com/ordersaga/ordersaga/gen/order/v1"
	_ "github.com/ordersaga/ordersaga/gen/payment/v1"
	_ "github.com/ordersaga/ordersaga/gen/shipping/v1"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// Channeler opens AMQP channels; *broker.Conn is one.
type Channeler interface {
	Channel(ctx context.Context) (*amqp.Channel, error)
}

// QueueDepth is a dead-letter queue, the queue whose dead letters it holds, and how many wait.
type QueueDepth struct {
	Queue  string `json:"queue"`
	Source string `json:"source"`
	Depth  int    `json:"depth"`
}

// DeadLetterQueues returns every dead-letter queue of the fixed topology with its depth. It uses
// passive declares, so it works without the management plugin.
func DeadLetterQueues(ctx context.Context, conn Channeler) ([]QueueDepth, error) {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	out := make([]QueueDepth, 0, len(catalog.Subscriptions()))
	for _, s := range catalog.Subscriptions() {
		q, err := ch.QueueDeclarePassive(s.DeadLetterQueue(), true, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", s.DeadLetterQueue(), err)
		}
		out = append(out, QueueDepth{Queue: s.DeadLetterQueue(), Source: s.Queue(), Depth: q.Messages})
	}
	return out, nil
}

// SourceQueue returns the queue whose dead letters dlq holds. The name may omit ".dlq".
// Only the topology's dead-letter queues are accepted: each is bound to the dead-letter
// exchange by its source queue's name alone, so that is where its messages came from.
func SourceQueue(dlq string) (string, error) {
	name := strings.TrimSuffix(dlq, ".dlq")
	for _, s := range catalog.Subscriptions() {
		if s.Queue() == name {
			return name, nil
		}
	}
	return "", fmt.Errorf("%q is not a dead-letter queue of the saga (see: ordersctl dlq list)", dlq)
}

// DeadLetter describes one dead-lettered message.
type DeadLetter struct {
	MessageID     string    `json:"message_id"`
	Type          string    `json:"type"`
	CorrelationID string    `json:"correlation_id"`
	Timestamp     time.Time `json:"timestamp,omitzero"`
	Traceparent   string    `json:"traceparent,omitempty"` // W3C trace context of the publish, when traced
	Size          int       `json:"size"`
	// Event is the payload as protojson when the type is a known message and it decodes.
	Event json.RawMessage `json:"event,omitempty"`
	// Undecodable says why Event is missing; Preview is then the payload's first bytes in hex.
	Undecodable string `json:"undecodable,omitempty"`
	Preview     string `json:"preview,omitempty"`
	// Set by the consumer that gave up on the message (broker.HeaderReason and friends).
	Reason     string `json:"reason,omitempty"`
	FailedOn   string `json:"failed_on,omitempty"`
	Exchange   string `json:"exchange,omitempty"`
	RoutingKey string `json:"routing_key,omitempty"`
	FailedAt   string `json:"failed_at,omitempty"`
	// Set by the broker when it dead-lettered the message itself (delivery limit, rejection).
	Deaths []Death `json:"deaths,omitempty"`
	// DeliveryCount is x-delivery-count as the broker reports it, else the x-death counts. The
	// dead-letter queue counts its own redeliveries too, earlier inspections included.
	DeliveryCount int64 `json:"delivery_count"`
}

// Death is one entry of the broker's x-death header.
type Death struct {
	Reason      string   `json:"reason"`
	Count       int64    `json:"count"`
	Queue       string   `json:"queue"`
	Exchange    string   `json:"exchange"`
	RoutingKeys []string `json:"routing_keys,omitempty"`
}

const previewBytes = 64

// Describe decodes a dead letter's payload and the reasons recorded in its headers.
func Describe(d amqp.Delivery) DeadLetter {
	dl := DeadLetter{
		MessageID:     d.MessageId,
		Type:          d.Type,
		CorrelationID: d.CorrelationId,
		Timestamp:     d.Timestamp,
		Traceparent:   headerString(d.Headers, "traceparent"),
		Size:          len(d.Body),
		Reason:        headerString(d.Headers, broker.HeaderReason),
		FailedOn:      headerString(d.Headers, broker.HeaderQueue),
		Exchange:      headerString(d.Headers, broker.HeaderExchange),
		RoutingKey:    headerString(d.Headers, broker.HeaderRoutingKey),
		FailedAt:      headerString(d.Headers, broker.HeaderFailedAt),
		Deaths:        deaths(d.Headers),
	}
	if ev, err := decodeEvent(d.Type, d.Body); err != nil {
		dl.Undecodable = err.Error()
		dl.Preview = hex.EncodeToString(d.Body[:min(len(d.Body), previewBytes)])
	} else {
		dl.Event = ev
	}
	dl.DeliveryCount, _ = toInt64(d.Headers["x-delivery-count"])
	if dl.DeliveryCount == 0 {
		for _, death := range dl.Deaths {
			dl.DeliveryCount += death.Count
		}
	}
	return dl
}

func decodeEvent(typ string, body []byte) (json.RawMessage, error) {
	if typ == "" {
		return nil, errors.New("no message type")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		return nil, fmt.Errorf("unknown message type %q", typ)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(body, msg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s as json: %w", typ, err)
	}
	return json.RawMessage(b), nil
}

func headerString(h amqp.Table, key string) string {
	s, _ := h[key].(string)
	return s
}

func deaths(h amqp.Table) []Death {
	list, _ := h["x-death"].([]any)
	var out []Death
	for _, item := range list {
		t, ok := item.(amqp.Table)
		if !ok {
			continue
		}
		d := Death{Reason: headerString(t, "reason"), Queue: headerString(t, "queue"), Exchange: headerString(t, "exchange")}
		d.Count, _ = toInt64(t["count"])
		keys, _ := t["routing-keys"].([]any)
		for _, k := range keys {
			if s, ok := k.(string); ok {
				d.RoutingKeys = append(d.RoutingKeys, s)
			}
		}
		out = append(out, d)
	}
	return out
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case int:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	return 0, false
}

// Peek returns up to n dead letters of dlq without removing them: they are taken unacked, one
// basic.get each (so none is seen twice), and go back to the queue when the channel closes.
func Peek(ctx context.Context, conn Channeler, dlq string, n int) ([]DeadLetter, error) {
	if _, err := SourceQueue(dlq); err != nil {
		return nil, err
	}
	ch, err := conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	defer func() {
		// Closing the channel gives the messages back, but the queue counts them again only a
		// moment later: wait for that, so that a replay or an audit right after sees them.
		ch.Close()
		waitDepth(ctx, conn, dlq, len(out))
	}()
	for len(out) < n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, ok, err := ch.Get(dlq, false)
		if err != nil {
			return nil, fmt.Errorf("get from %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		out = append(out, Describe(d))
	}
	return out, nil
}

// waitDepth waits, for a few seconds at most, until queue holds at least n messages.
func waitDepth(ctx context.Context, conn Channeler, queue string, n int) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ch, err := conn.Channel(ctx)
		if err != nil {
			return
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		ch.Close()
		if err != nil || q.Messages >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replay moves dead letters of dlq back to the queue they failed on and returns how many it
// moved. With a messageID it moves the first dead letter with that id and leaves the rest;
// with "" it moves every dead letter that was there when it started (a message that fails
// again and comes back meanwhile is not replayed a second time).
//
// Each one is published to the default exchange with the source queue as routing key, so only
// the consumer that failed gets it again, not every subscriber of the event. Body and properties
// are kept; the dead-letter headers are dropped so the message starts afresh. The dead letter is
// acked only after the broker confirmed the copy, so a failure anywhere loses nothing (at worst
// a message is both replayed and still in the queue, which the consumer's inbox absorbs).
func Replay(ctx context.Context, conn Channeler, dlq, messageID string) (int, error) {
	source, err := SourceQueue(dlq)
	if err != nil {
		return 0, err
	}
	ch, err := conn.Channel(ctx)
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, fmt.Errorf("confirm mode: %w", err)
	}
	// The library hands a basic.return over before the confirm that follows it, so after a
	// confirm came in, a return of that message is already in this buffer.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("queue %s: %w", dlq, err)
	}
	replayed := 0
	// Non-matching messages stay unacked on this channel until it closes, so basic.get never
	// hands the same one out twice.
	for range q.Messages {
		d, ok, err := ch.Get(dlq, false)
		if err != nil {
			return replayed, fmt.Errorf("get from %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		if messageID != "" && d.MessageId != messageID {
			continue
		}
		if err := republish(ctx, ch, returns, source, d); err != nil {
			return replayed, fmt.Errorf("replay %s: %w", d.MessageId, err)
		}
		if err := d.Ack(false); err != nil {
			return replayed, fmt.Errorf("ack dead letter %s: %w", d.MessageId, err)
		}
		replayed++
		if messageID != "" {
			break
		}
	}
	if messageID != "" && replayed == 0 {
		return 0, fmt.Errorf("no dead letter with message id %q in %s", messageID, dlq)
	}
	return replayed, nil
}

func republish(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, queue string, d amqp.Delivery) error {
	// user_id is left out: the broker checks it against whoever publishes, who may be another
	// user than the original publisher.
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		Headers:         ReplayHeaders(d.Headers),
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", queue, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for confirm: %w", err)
	}
	if !acked {
		return fmt.Errorf("broker refused the message for %s", queue)
	}
	select {
	case r := <-returns:
		return fmt.Errorf("queue %s did not take the message: %s", queue, r.ReplyText)
	default:
	}
	return nil
}

// ReplayHeaders returns h without what dead-lettering added: our x-ordersaga-* headers, the
// broker's x-death family, and the delivery count, which the source queue must count afresh.
func ReplayHeaders(h amqp.Table) amqp.Table {
	out := amqp.Table{}
	for k, v := range h {
		switch {
		case strings.HasPrefix(k, "x-ordersaga-"),
			k == "x-death",
			strings.HasPrefix(k, "x-first-death-"),
			strings.HasPrefix(k, "x-last-death-"),
			k == "x-delivery-count":
			continue
		}
		out[k] = v
	}
	return out
}
