package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is one message to publish.
type Message struct {
	Exchange      string
	RoutingKey    string
	MessageID     string // the event id
	Type          string // full proto message name
	ContentType   string // default application/x-protobuf
	CorrelationID string // the order id
	Timestamp     time.Time
	Headers       amqp.Table
	Body          []byte
}

// ContentTypeProtobuf is the content type of every event.
const ContentTypeProtobuf = "application/x-protobuf"

// Publisher publishes persistent, mandatory messages on a channel in confirm mode, reopening the
// channel after a reconnect. It is safe for concurrent use; batches are published one at a time.
type Publisher struct {
	conn *Conn

	mu      sync.Mutex
	ch      *amqp.Channel
	returns chan amqp.Return
}

// NewPublisher returns a publisher on conn. Its channel is opened on first use.
func NewPublisher(conn *Conn) *Publisher { return &Publisher{conn: conn} }

// Publish sends msgs with many confirms in flight and waits for all of them. ok[i] reports
// whether the broker confirmed msgs[i] and routed it to at least one queue: a message that was
// nacked, returned as unroutable or left unconfirmed is not ok and must be published again.
// An error means the channel failed; messages before the failure may still be ok.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) (ok []bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok = make([]bool, len(msgs))
	ch, err := p.channel(ctx)
	if err != nil {
		return ok, err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for _, m := range msgs {
		ct := m.ContentType
		if ct == "" {
			ct = ContentTypeProtobuf
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Exchange, m.RoutingKey, true, false, amqp.Publishing{
			Headers:       m.Headers,
			ContentType:   ct,
			DeliveryMode:  amqp.Persistent,
			CorrelationId: m.CorrelationID,
			MessageId:     m.MessageID,
			Timestamp:     m.Timestamp,
			Type:          m.Type,
			Body:          m.Body,
		})
		if err != nil {
			err = fmt.Errorf("publish %s: %w", m.RoutingKey, err)
			p.reset()
			break
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		acked, werr := dc.WaitContext(ctx)
		if werr != nil {
			p.reset()
			if err == nil {
				err = fmt.Errorf("wait for confirm: %w", werr)
			}
			break
		}
		ok[i] = acked
	}
	// The broker sends basic.return before the confirm of the same message, and the library
	// hands returns over before it processes that confirm: once every confirm is in, every
	// return is in too.
	returned := map[string]bool{}
drain:
	for {
		select {
		case r, open := <-p.returns:
			if !open {
				break drain
			}
			returned[r.MessageId] = true
		default:
			break drain
		}
	}
	for i, m := range msgs {
		outcome := "confirmed"
		switch {
		case returned[m.MessageID]:
			ok[i] = false
			outcome = "returned"
		case i >= len(confirms):
			outcome = "failed"
		case !ok[i]:
			outcome = "nacked"
		}
		published.WithLabelValues(m.Exchange, m.Type, outcome).Inc()
	}
	if len(returned) > 0 && err == nil {
		err = fmt.Errorf("%d message(s) unroutable", len(returned))
	}
	return ok, err
}

func (p *Publisher) channel(ctx context.Context) (*amqp.Channel, error) {
	if p.ch != nil && !p.ch.IsClosed() {
		return p.ch, nil
	}
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	p.returns = ch.NotifyReturn(make(chan amqp.Return, 1024))
	p.ch = ch
	return ch, nil
}

func (p *Publisher) reset() {
	if p.ch != nil {
		p.ch.Close()
		p.ch = nil
	}
}

// Close closes the publisher's channel.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
}
