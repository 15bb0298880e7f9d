package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"
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
// channel after a reconnect. It is safe for concurrent use.
type Publisher struct {
	conn *Conn

	mu      sync.Mutex // guards ch, returns and seq while publishing
	ch      *amqp.Channel
	returns *returns // what the broker returned on ch
	seq     int64    // the number of the last publish, in HeaderPublish
}

// HeaderPublish numbers each publish of a Publisher. A returned message carries it back, which
// ties the return to the one publish it came from: the message id cannot, as the same event may
// be in flight more than once.
const HeaderPublish = "x-ordersaga-publish"

// NewPublisher returns a publisher on conn. Its channel is opened on first use.
func NewPublisher(conn *Conn) *Publisher { return &Publisher{conn: conn} }

// Publish sends msgs with many confirms in flight and waits for all of them. ok[i] reports
// whether the broker confirmed msgs[i] and routed it to at least one queue: a message that was
// nacked, returned as unroutable or left unconfirmed is not ok and must be published again.
// An error means the channel failed or a message was unroutable.
func (p *Publisher) Publish(ctx context.Context, msgs []Message) (ok []bool, err error) {
	pending, err := p.Send(ctx, msgs)
	ok = pending.Wait(ctx)
	if err == nil {
		err = pending.Err()
	}
	return ok, err
}

// Pending is a batch of messages sent and not yet confirmed.
type Pending struct {
	p        *Publisher
	msgs     []Message
	confirms []*amqp.DeferredConfirmation // one per message sent; fewer when sending failed
	seqs     []int64                      // the HeaderPublish of each message sent or tried
	returns  *returns                     // of ch
	spans    []trace.Span                 // the send span of each traced message, nil when none is
	ch       *amqp.Channel
	unrouted int
	nacked   int // confirms that came back negative, or were settled so by a channel close
	lost     int // messages not confirmed: nacked, unsent, or still waiting when Wait gave up
	failed   bool
}

// Send publishes msgs without waiting for their confirms, so that the next batch can be sent
// while these are in flight. An error means the channel failed part way: the messages not
// sent are reported not ok by Wait, which must be called.
func (p *Publisher) Send(ctx context.Context, msgs []Message) (*Pending, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := &Pending{p: p, msgs: msgs, confirms: make([]*amqp.DeferredConfirmation, 0, len(msgs))}
	ch, err := p.channel(ctx)
	if err != nil {
		return pending, err
	}
	pending.ch, pending.returns = ch, p.returns
	for i, m := range msgs {
		// A message that carries trace context gets a send span, lasting until its confirm,
		// and carries the span's context on.
		m, span := startSend(ctx, m)
		if span != nil {
			if pending.spans == nil {
				pending.spans = make([]trace.Span, len(msgs))
			}
			pending.spans[i] = span
		}
		ct := m.ContentType
		if ct == "" {
			ct = ContentTypeProtobuf
		}
		p.seq++
		headers := make(amqp.Table, len(m.Headers)+1)
		maps.Copy(headers, m.Headers) // the caller's map stays as it was
		headers[HeaderPublish] = p.seq
		pending.seqs = append(pending.seqs, p.seq)
		p.returns.expect(p.seq)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Exchange, m.RoutingKey, true, false, amqp.Publishing{
			Headers:       headers,
			ContentType:   ct,
			DeliveryMode:  amqp.Persistent,
			CorrelationId: m.CorrelationID,
			MessageId:     m.MessageID,
			Timestamp:     m.Timestamp,
			Type:          m.Type,
			Body:          m.Body,
		})
		if err != nil {
			p.reset()
			return pending, fmt.Errorf("publish %s: %w", m.RoutingKey, err)
		}
		pending.confirms = append(pending.confirms, dc)
	}
	return pending, nil
}

// Wait waits for the confirms of a sent batch and reports, per message, whether the broker
// confirmed it and routed it to a queue. It gives up when ctx ends: those not confirmed by then
// are not ok.
func (pd *Pending) Wait(ctx context.Context) []bool {
	ok := make([]bool, len(pd.msgs))
	for i, dc := range pd.confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			pd.failed = true
			pd.p.resetIf(pd.ch)
			break
		}
		ok[i] = acked
		if !acked {
			pd.nacked++
		}
	}
	if len(pd.confirms) < len(pd.msgs) {
		pd.failed = true
	}
	// The library settles the confirms still pending as nacks when the channel closes: the
	// broker closes it for a publish to an exchange that does not exist (deleted under the
	// service). Say so, so that the caller declares the topology again before retrying.
	if pd.nacked > 0 && pd.ch != nil && pd.ch.IsClosed() {
		pd.failed = true
		pd.p.resetIf(pd.ch)
	}
	// The broker sends a message's basic.return before its confirm, and the library hands the
	// return over before it processes that confirm: once a confirm is in, its return is too.
	var returned []bool
	if pd.returns != nil {
		returned = pd.returns.settle(pd.seqs)
	}
	for i, m := range pd.msgs {
		outcome := "confirmed"
		isReturned := i < len(returned) && returned[i]
		switch {
		case isReturned:
			ok[i] = false
			pd.unrouted++
			outcome = "returned"
		case i >= len(pd.confirms):
			outcome = "failed"
		case !ok[i]:
			outcome = "nacked"
		}
		if !ok[i] && !isReturned {
			pd.lost++
		}
		published.WithLabelValues(m.Exchange, m.Type, outcome).Inc()
		if pd.spans != nil {
			var err error
			if outcome != "confirmed" {
				err = errors.New(outcome)
			}
			endSpan(pd.spans[i], err)
		}
	}
	pd.spans = nil
	return ok
}

// Err explains, after Wait, why some messages were not ok.
func (pd *Pending) Err() error {
	switch {
	case pd.failed:
		return fmt.Errorf("publish: channel failed with %d of %d messages unconfirmed", pd.lost, len(pd.msgs))
	case pd.unrouted > 0:
		return fmt.Errorf("%d message(s) unroutable", pd.unrouted)
	case pd.nacked > 0:
		return fmt.Errorf("%d message(s) nacked by the broker", pd.nacked)
	}
	return nil
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
	p.returns = watchReturns(ch)
	p.ch = ch
	return ch, nil
}

func (p *Publisher) reset() {
	if p.ch != nil {
		p.ch.Close()
		p.ch = nil
	}
}

// resetIf closes ch if it is still the publisher's channel.
func (p *Publisher) resetIf(ch *amqp.Channel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == ch {
		p.reset()
	}
}

// Close closes the publisher's channel.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
}

// returns collects what the broker returns as unroutable on one channel. It takes each return
// off the library at once, into a map that grows as it needs: the library waits at most five
// seconds for a listener with room and then drops the return, and a dropped return would make
// an unroutable message count as routed.
type returns struct {
	in    chan amqp.Return
	flush chan chan struct{}
	done  chan struct{} // closed once the channel closed and every return was taken in

	mu       sync.Mutex
	returned map[int64]bool // by publish number: sent and not yet settled, and whether returned
}

func watchReturns(ch *amqp.Channel) *returns {
	r := &returns{
		in:       ch.NotifyReturn(make(chan amqp.Return, 256)),
		flush:    make(chan chan struct{}),
		done:     make(chan struct{}),
		returned: map[int64]bool{},
	}
	go r.run()
	return r
}

func (r *returns) run() {
	defer close(r.done)
	for {
		select {
		case ret, open := <-r.in:
			if !open {
				return
			}
			r.add(ret)
		case reply := <-r.flush:
			open := r.drain()
			close(reply)
			if !open {
				return
			}
		}
	}
}

// drain takes in every return the library has handed over, and reports whether more may come.
func (r *returns) drain() bool {
	for {
		select {
		case ret, open := <-r.in:
			if !open {
				return false
			}
			r.add(ret)
		default:
			return true
		}
	}
}

func (r *returns) add(ret amqp.Return) {
	n, ok := ret.Headers[HeaderPublish].(int64)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A return for a publish already settled (its Wait gave up) is of no use to anyone.
	if _, sent := r.returned[n]; sent {
		r.returned[n] = true
	}
}

// expect records publish n as sent, before it is.
func (r *returns) expect(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.returned[n] = false
}

// settle reports whether each of the publishes was returned, and forgets them. It takes in
// first every return the library handed over before the call.
func (r *returns) settle(ns []int64) []bool {
	reply := make(chan struct{})
	select {
	case r.flush <- reply:
		<-reply
	case <-r.done:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]bool, len(ns))
	for i, n := range ns {
		out[i] = r.returned[n]
		delete(r.returned, n)
	}
	return out
}
