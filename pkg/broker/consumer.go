package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Handler applies a batch of deliveries all or nothing, typically in one database transaction.
// It returns nil when the whole batch took effect, an error marked Permanent when a delivery can
// never be handled (undecodable, unknown type, invalid), or any other error.
type Handler func(ctx context.Context, batch []amqp.Delivery) error

// DefaultHandlerTimeout bounds one handler call unless ConsumerOptions say otherwise. A consumer
// that is stopped finishes the batch in hand, so it also bounds how long a stop waits for it.
const DefaultHandlerTimeout = 30 * time.Second

// ConsumerOptions tune a consumer; zero values take the defaults.
type ConsumerOptions struct {
	BatchSize      int           // deliveries handled in one call (default 64)
	HandlerTimeout time.Duration // bound on one handler call (default 30s)
	// UnknownErrorTries is how often a delivery failing with an error that is neither transient
	// nor permanent is retried in process before it is requeued, spending one delivery of the
	// queue's delivery limit (default 3).
	UnknownErrorTries int
}

func (o *ConsumerOptions) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = DefaultHandlerTimeout
	}
	if o.UnknownErrorTries <= 0 {
		o.UnknownErrorTries = 3
	}
}

// Consume consumes queue until ctx ends, reopening its channel after a reconnect.
//
// Deliveries are taken in batches: whatever is waiting, up to BatchSize, so that under load one
// transaction covers many events, and an idle queue still answers one event at once. A batch is
// acked only after the handler returned nil. A failed batch is split, so one bad delivery never
// holds back the others: transient errors are retried with backoff without touching the
// delivery count; permanent ones go to the dead-letter queue at once with the reason in headers.
//
// When ctx ends, Consume stops taking deliveries, finishes the batch in hand and returns nil;
// deliveries prefetched but not handled go back to the queue when the channel closes.
func (c *Conn) Consume(ctx context.Context, queue string, h Handler, opts ConsumerOptions) error {
	opts.defaults()
	cons := &consumer{conn: c, queue: queue, handle: h, opts: opts, log: c.log.With("queue", queue), dl: NewPublisher(c)}
	defer cons.dl.Close()
	for ctx.Err() == nil {
		err := cons.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		cons.log.WarnContext(ctx, "consumer interrupted, resuming", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

type consumer struct {
	conn   *Conn
	queue  string
	handle Handler
	opts   ConsumerOptions
	log    *slog.Logger
	dl     *Publisher // publishes dead letters with their reason
}

// session consumes on one channel until it closes or ctx ends.
func (cons *consumer) session(ctx context.Context) error {
	ch, err := cons.conn.Channel(ctx)
	if err != nil {
		return err
	}
	var deliveries <-chan amqp.Delivery
	defer func() {
		// The library blocks closing a channel while it still holds deliveries for us: drain
		// them (unacked, they go back to the queue) while the channel closes.
		if deliveries != nil {
			go func() {
				for range deliveries {
				}
			}()
		}
		ch.Close()
	}()
	if err := ch.Qos(cons.opts.BatchSize*2, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	// Not ConsumeWithContext: its cancel would race the channel close below for the same reply.
	deliveries, err = ch.Consume(cons.queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	batch := make([]amqp.Delivery, 0, cons.opts.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			batch = append(batch, d)
		}
	fill:
		for len(batch) < cons.opts.BatchSize {
			select {
			case d, ok := <-deliveries:
				if !ok {
					break fill
				}
				batch = append(batch, d)
			default:
				break fill
			}
		}
		// The batch in hand is finished even when ctx ends: its effects may be committed already.
		cons.process(context.WithoutCancel(ctx), ctx.Done(), batch)
	}
}

// process handles a batch and settles every delivery in it: ack, dead-letter, or (only after
// repeated unknown errors) requeue. Deliveries left unsettled because stop closed are returned
// to the queue with the channel.
func (cons *consumer) process(ctx context.Context, stop <-chan struct{}, batch []amqp.Delivery) {
	err := cons.call(ctx, batch)
	if err == nil {
		cons.ack(batch)
		return
	}
	if len(batch) > 1 && IsTransient(err) {
		// The database or broker is away: retry the whole batch once it is back.
		if cons.retryTransient(ctx, stop, batch, err) {
			cons.ack(batch)
		}
		return
	}
	if len(batch) > 1 {
		// One delivery spoils the batch: find it by handling each on its own.
		for _, d := range batch {
			cons.process(ctx, stop, []amqp.Delivery{d})
		}
		return
	}
	d := batch[0]
	switch {
	case IsPermanent(err):
		cons.deadLetter(ctx, d, err)
	case IsTransient(err):
		if cons.retryTransient(ctx, stop, batch, err) {
			cons.ack(batch)
		}
	default:
		for try := 1; try < cons.opts.UnknownErrorTries; try++ {
			if sleep(stop, time.Duration(try)*200*time.Millisecond) {
				return
			}
			if err = cons.call(ctx, batch); err == nil {
				cons.ack(batch)
				return
			}
			if IsPermanent(err) {
				cons.deadLetter(ctx, d, err)
				return
			}
		}
		cons.log.ErrorContext(ctx, "handler keeps failing, requeueing", "err", err, "event_id", d.MessageId, "order_id", d.CorrelationId)
		consumed.WithLabelValues(cons.queue, d.Type, "requeued").Inc()
		if err := d.Nack(false, true); err != nil {
			cons.log.WarnContext(ctx, "nack failed", "err", err)
		}
	}
}

func (cons *consumer) call(ctx context.Context, batch []amqp.Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, cons.opts.HandlerTimeout)
	defer cancel()
	start := time.Now()
	err := cons.handle(ctx, batch)
	handlerSeconds.WithLabelValues(cons.queue).Observe(time.Since(start).Seconds())
	batchSize.WithLabelValues(cons.queue).Observe(float64(len(batch)))
	return err
}

// retryTransient retries a batch with backoff until it succeeds (true), stop closes (false), or
// the error turns out not to be transient after all (the batch is then processed again).
func (cons *consumer) retryTransient(ctx context.Context, stop <-chan struct{}, batch []amqp.Delivery, err error) bool {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	for {
		cons.log.WarnContext(ctx, "transient failure, retrying batch", "err", err, "size", len(batch))
		consumed.WithLabelValues(cons.queue, batch[0].Type, "retried").Add(float64(len(batch)))
		if sleep(stop, b.NextBackOff()) {
			return false
		}
		err = cons.call(ctx, batch)
		if err == nil {
			return true
		}
		if !IsTransient(err) {
			cons.process(ctx, stop, batch)
			return false
		}
	}
}

func (cons *consumer) ack(batch []amqp.Delivery) {
	for _, d := range batch {
		consumed.WithLabelValues(cons.queue, d.Type, "ok").Inc()
		// A failed ack means the channel is gone: the broker redelivers and the inbox absorbs it.
		if err := d.Ack(false); err != nil {
			cons.log.Warn("ack failed", "err", err, "event_id", d.MessageId)
			return
		}
	}
}

// deadLetter moves a delivery to the queue's dead-letter queue with the reason in its headers,
// then acks it. If that publish fails, the delivery is rejected and the broker dead-letters it
// with its own x-death headers instead: either way it is kept.
func (cons *consumer) deadLetter(ctx context.Context, d amqp.Delivery, reason error) {
	cons.log.ErrorContext(ctx, "dead-lettering event", "err", reason, "event_id", d.MessageId, "order_id", d.CorrelationId, "type", d.Type)
	consumed.WithLabelValues(cons.queue, d.Type, "dead_lettered").Inc()
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = reason.Error()
	headers[HeaderQueue] = cons.queue
	headers[HeaderExchange] = d.Exchange
	headers[HeaderRoutingKey] = d.RoutingKey
	headers[HeaderFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	msg := Message{
		Exchange:      DeadLetterExchange,
		RoutingKey:    cons.queue,
		MessageID:     d.MessageId,
		Type:          d.Type,
		ContentType:   d.ContentType,
		CorrelationID: d.CorrelationId,
		Timestamp:     d.Timestamp,
		Headers:       headers,
		Body:          d.Body,
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if res, err := cons.dl.Publish(pctx, []Message{msg}); err != nil || !res[0] {
		cons.log.WarnContext(ctx, "dead-letter publish failed, rejecting instead", "err", err, "event_id", d.MessageId)
		if err := d.Reject(false); err != nil {
			cons.log.WarnContext(ctx, "reject failed", "err", err)
		}
		return
	}
	if err := d.Ack(false); err != nil {
		cons.log.WarnContext(ctx, "ack failed", "err", err)
	}
}

// Headers set on dead letters by consumers.
const (
	HeaderReason     = "x-ordersaga-reason"
	HeaderQueue      = "x-ordersaga-queue"
	HeaderExchange   = "x-ordersaga-exchange"
	HeaderRoutingKey = "x-ordersaga-routing-key"
	HeaderFailedAt   = "x-ordersaga-failed-at"
)

// sleep waits d and reports whether stop closed first.
func sleep(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-stop:
		return true
	}
}
