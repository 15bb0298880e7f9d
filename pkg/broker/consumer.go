package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/failure"
)

// Handler applies a batch of deliveries, typically in one database transaction. It returns nil
// when the whole batch took effect; Rejected when all took effect but the deliveries it names,
// which can never be handled; an error marked failure.Permanent when the batch holds a
// delivery that can never be handled but the handler cannot tell which; or any other error,
// when nothing took effect.
type Handler func(ctx context.Context, batch []amqp.Delivery) error

// Rejected names, by their index in the batch, the deliveries a handler refused for good, with
// the reason: they go to the dead-letter queue, the rest of the batch is acked.
type Rejected map[int]error

func (r Rejected) Error() string {
	idx := make([]int, 0, len(r))
	for i := range r {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	parts := make([]string, len(idx))
	for n, i := range idx {
		parts[n] = fmt.Sprintf("delivery %d: %v", i, r[i])
	}
	return "rejected: " + strings.Join(parts, "; ")
}

// DefaultHandlerTimeout bounds one handler call unless ConsumerOptions say otherwise. A consumer
// that is stopped finishes the batch in hand, so it also bounds how long a stop waits for it.
const DefaultHandlerTimeout = 30 * time.Second

// ConsumerOptions tune a consumer; zero values take the defaults.
type ConsumerOptions struct {
	BatchSize      int           // most deliveries handled in one call (default 128)
	HandlerTimeout time.Duration // bound on one handler call (default 30s)
	// UnknownErrorTries is how often a delivery failing with an error that is neither transient
	// nor permanent is retried in process before it counts one failure and goes back to the
	// queue (default 3).
	UnknownErrorTries int
	// FailureLimit is how many such failures a message may have before it is dead-lettered
	// (default FailureLimit).
	FailureLimit int
	// SubscriptionCheck is how often the consumer checks that its queue still exists and that
	// its subscription still receives what waits there (default 2s); see consumer.watch.
	SubscriptionCheck time.Duration
	// Publish is the connection dead letters and copies put back for another try are published
	// on (default: the consuming one). Apart from it, a broker alarm that blocks publishing
	// never stops the acks that drain the queue.
	Publish *Conn
}

func (o *ConsumerOptions) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 128
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = DefaultHandlerTimeout
	}
	if o.UnknownErrorTries <= 0 {
		o.UnknownErrorTries = 3
	}
	if o.FailureLimit <= 0 {
		o.FailureLimit = FailureLimit
	}
	if o.SubscriptionCheck <= 0 {
		o.SubscriptionCheck = 2 * time.Second
	}
}

// Consume consumes queue until ctx ends, reopening its channel after a reconnect.
//
// A batch is whatever arrived while the previous batch was being handled, up to BatchSize: an
// idle queue answers one event at once, and under load one transaction covers many events. A
// batch is acked, with one multiple-ack, only after the handler returned. A failed batch is
// split so that one bad delivery never holds back the others: transient errors are retried with
// backoff without touching the delivery count; permanent ones go to the dead-letter queue at
// once with the reason in headers; any other error is retried a few times in process, then the
// delivery goes back to the end of the queue with its failure counted in a header, and to the
// dead-letter queue once it has failed FailureLimit times.
//
// When ctx ends, Consume stops taking deliveries, finishes the batch in hand and returns nil;
// deliveries prefetched but not handled go back to the queue when the channel closes.
func (c *Conn) Consume(ctx context.Context, queue string, h Handler, opts ConsumerOptions) error {
	return c.Consumer(queue, h, opts).Run(ctx)
}

// Consumer is a consumer of one queue, made to run (Run) and to be asked whether it consumes
// (Check): a service whose consumer the broker refuses is not ready.
type Consumer struct{ cons *consumer }

// Consumer returns a consumer of queue on c with handler h: see Consume.
func (c *Conn) Consumer(queue string, h Handler, opts ConsumerOptions) *Consumer {
	opts.defaults()
	publish := opts.Publish
	if publish == nil {
		publish = c
	}
	log := c.log.With("queue", queue)
	// Outermost first: every call is bounded, traced and measured, and a panic is an error.
	h = Chain(h, Timeout(opts.HandlerTimeout), instrument(queue), Recoverer(log))
	cons := &consumer{conn: c, queue: queue, handle: h, opts: opts, log: log, dl: NewPublisher(publish)}
	cons.state.Store(&consumerState{err: errors.New("not subscribed yet")})
	return &Consumer{cons: cons}
}

// Run consumes until ctx ends, as Consume.
func (c *Consumer) Run(ctx context.Context) error {
	cons := c.cons
	defer cons.dl.Close()
	for ctx.Err() == nil {
		err := cons.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		cons.state.Store(&consumerState{err: err})
		cons.log.WarnContext(ctx, "consumer interrupted, resuming", "err", err)
		// The queue may have been deleted (the broker cancels its consumers): declare it again.
		if err := cons.conn.Redeclare(ctx); err != nil && ctx.Err() == nil {
			cons.log.WarnContext(ctx, "declaring the topology again failed", "err", err)
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

// Check reports, as a readiness check, whether the consumer is subscribed to its queue. A
// session that failed counts until the next one subscribes, so that a consumer refused again
// and again (read rights revoked, the queue declared with other arguments) stays not ready
// while it retries.
func (c *Consumer) Check(context.Context) error {
	if st := c.cons.state.Load(); st.err != nil {
		return fmt.Errorf("queue %s: %w", c.cons.queue, st.err)
	}
	return nil
}

// consumerState is a consumer's subscription as Check reports it: nil error while subscribed.
type consumerState struct{ err error }

type consumer struct {
	conn   *Conn
	queue  string
	handle Handler
	opts   ConsumerOptions
	log    *slog.Logger
	dl     *Publisher // publishes dead letters and copies put back, on the publishing connection
	state  atomic.Pointer[consumerState]
}

// session consumes on one channel until it closes or ctx ends.
func (cons *consumer) session(ctx context.Context) error {
	ch, err := cons.conn.Channel(ctx)
	if err != nil {
		return err
	}
	prefetch := cons.opts.BatchSize * 2
	var pumped chan amqp.Delivery
	defer func() {
		ch.Close()
		// Unsettled deliveries go back to the queue with the channel; drop our copies.
		if pumped != nil {
			for range pumped {
			}
		}
	}()
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	// Not ConsumeWithContext: its cancel would race the channel close above for the same reply.
	deliveries, err := ch.Consume(cons.queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	cons.state.Store(&consumerState{})
	// The library hands deliveries over one at a time on an unbuffered channel, so a batch
	// taken straight from it almost never holds more than one. A pump with room for the whole
	// prefetch collects what arrives while a batch is being handled; it never blocks, because
	// the broker sends no more than the prefetch unsettled.
	pumped = make(chan amqp.Delivery, prefetch)
	var sub subscription
	go func() {
		defer close(pumped)
		for d := range deliveries {
			sub.received.Add(1)
			// Renewing d before the next delivery is pumped keeps every later tag out of the
			// batches until d is settled: no multiple-ack can settle it while its copy is on the way.
			if cons.renew(ctx, d) {
				continue
			}
			pumped <- d
		}
	}()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	lost := make(chan error, 1)
	go cons.watch(wctx, &sub, func() bool { return sub.busy.Load() || len(pumped) > 0 }, lost)
	batch := make([]amqp.Delivery, 0, cons.opts.BatchSize)
	for {
		if ctx.Err() != nil {
			return nil // never take a batch after a stop: see ack
		}
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			return err
		case d, ok := <-pumped:
			if !ok {
				return errors.New("delivery channel closed")
			}
			batch = append(batch, d)
		}
	fill:
		for len(batch) < cons.opts.BatchSize {
			select {
			case d, ok := <-pumped:
				if !ok {
					break fill
				}
				batch = append(batch, d)
			default:
				break fill
			}
		}
		// The batch in hand is finished even when ctx ends: its effects may be committed already.
		sub.busy.Store(true)
		cons.process(context.WithoutCancel(ctx), ctx.Done(), batch)
		sub.busy.Store(false)
	}
}

// subscription is what a session's watch knows of its deliveries.
type subscription struct {
	received atomic.Int64 // deliveries received so far
	busy     atomic.Bool  // a batch is being handled
}

// watch checks every SubscriptionCheck that the queue still exists and that the subscription
// still receives what waits in it, and reports on lost when not. A queue deleted under the
// service should cancel its consumers (basic.cancel, which closes the delivery channel), but
// RabbitMQ 3.10 does not always send it: a quorum queue deleted while a publish to it was in
// flight left its consumers subscribed to nothing, and the queue, declared again at once by
// another service, filling up with no one consuming it (its consumer count even counted the
// dead subscription for a while). So: messages ready in the queue at two checks in a row,
// while this consumer had room for them (nothing in hand) and received nothing in between,
// mean the subscription is dead.
func (cons *consumer) watch(ctx context.Context, sub *subscription, inHand func() bool, lost chan<- error) {
	t := time.NewTicker(cons.opts.SubscriptionCheck)
	defer t.Stop()
	starved := false // the last check found messages ready and this consumer idle
	var seen int64
	var ch *amqp.Channel // the checks' channel, kept from one check to the next
	defer func() {
		if ch != nil {
			ch.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ready, err := cons.check(ctx, &ch)
		if err != nil {
			lost <- err
			return
		}
		received := sub.received.Load()
		idle := ready > 0 && !inHand() && received == seen
		if idle && starved {
			lost <- fmt.Errorf("queue %s holds %d ready messages that reach no consumer: this subscription was lost", cons.queue, ready)
			return
		}
		starved, seen = idle, received
	}
}

// check returns how many messages are ready in the queue, and an error when the queue is gone
// or has no consumer although this one consumes it. Any other failure is left to the session,
// which ends by itself when the channel or the connection does. It opens *ch when it is not
// open, the broker having closed it after a failed check or with the connection.
func (cons *consumer) check(ctx context.Context, ch **amqp.Channel) (ready int, err error) {
	if *ch == nil || (*ch).IsClosed() {
		c, err := cons.conn.Channel(ctx)
		if err != nil {
			return 0, nil
		}
		*ch = c
	}
	q, err := (*ch).QueueDeclarePassive(cons.queue, true, false, false, false, nil)
	var amqpErr *amqp.Error
	switch {
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound:
		return 0, fmt.Errorf("queue %s no longer exists", cons.queue)
	case err != nil:
		return 0, nil
	case q.Consumers == 0:
		return 0, fmt.Errorf("queue %s has no consumer: this subscription was lost", cons.queue)
	}
	return q.Messages, nil
}

// verdict is what becomes of a batch, or of one delivery, once its handler returned.
type verdict int

const (
	ack        verdict = iota // it took effect: ack
	settle                    // the handler rejected some: dead-letter those, ack the rest
	wait                      // a dependency is away: the same batch again after a backoff, nothing counted
	split                     // one delivery spoils the batch: handle each on its own
	retry                     // an unknown error: try again in process, after a short pause
	putBack                   // the tries in process are spent: to the end of the queue, one failure counted
	deadLetter                // it can never take effect: to the dead-letter queue with the reason
	exhausted                 // it failed FailureLimit times: to the dead-letter queue
)

// decide is the consumer's policy, the one place that says what becomes of a delivery: from
// the error the handler returned for a batch of n deliveries, the calls made in process so far
// (tries, this one included) and, for one delivery, how often it failed before (Failures).
func decide(err error, n, tries, failures int, opts ConsumerOptions) verdict {
	var rejected Rejected
	switch {
	case err == nil:
		return ack
	case errors.As(err, &rejected):
		return settle
	case failure.IsTransient(err):
		return wait
	case n > 1:
		return split
	case failure.IsPermanent(err):
		return deadLetter
	case tries < opts.UnknownErrorTries:
		return retry
	case failures+1 >= opts.FailureLimit:
		return exhausted
	}
	return putBack
}

// arrival is what becomes of a delivery before it is handled: handled, renewed (put back as a
// fresh copy, the broker having counted RenewAt deliveries of it held by consumers that died),
// or dead-lettered (RedeliveryLimit deliveries in all: handling it kills the consumer).
type arrival int

const (
	handle arrival = iota
	renew
	tooOften
)

// arrive is the policy for a delivery the broker has delivered count times before (its
// x-delivery-count) after redeliveries of its earlier copies (HeaderRedeliveries).
func arrive(count, redeliveries int) arrival {
	switch {
	case count < RenewAt:
		return handle
	case redeliveries+count >= RedeliveryLimit:
		return tooOften
	}
	return renew
}

// process handles a batch and settles every delivery in it as decide says. Deliveries left
// unsettled because stop closed are returned to the queue with the channel.
func (cons *consumer) process(ctx context.Context, stop <-chan struct{}, batch []amqp.Delivery) {
	var b *backoff.ExponentialBackOff
	for tries := 1; ; tries++ {
		err := cons.handle(ctx, batch)
		failures := 0
		if len(batch) == 1 {
			failures = Failures(batch[0])
		}
		switch decide(err, len(batch), tries, failures, cons.opts) {
		case ack:
			cons.ack(batch)
			return
		case settle:
			var rejected Rejected
			errors.As(err, &rejected)
			cons.settle(ctx, batch, rejected)
			return
		case wait:
			if b == nil {
				b = backoff.NewExponentialBackOff()
				b.InitialInterval = 100 * time.Millisecond
				b.MaxInterval = 5 * time.Second
			}
			tries-- // waiting for a dependency spends none of the tries
			cons.log.WarnContext(ctx, "transient failure, retrying batch", "err", err, "size", len(batch))
			consumed.WithLabelValues(cons.queue, batch[0].Type, "retried").Add(float64(len(batch)))
			if sleep(stop, b.NextBackOff()) {
				return
			}
		case split:
			for _, d := range batch {
				select {
				case <-stop:
					return // the rest goes back to the queue with the channel
				default:
				}
				cons.process(ctx, stop, []amqp.Delivery{d})
			}
			return
		case retry:
			if sleep(stop, time.Duration(tries)*200*time.Millisecond) {
				return
			}
		case putBack:
			cons.retryLater(ctx, batch[0], err, failures+1)
			return
		case deadLetter:
			cons.deadLetter(ctx, batch[0], err)
			return
		case exhausted:
			cons.deadLetter(ctx, batch[0], fmt.Errorf("handler failed %d times, last: %w", failures+1, err))
			return
		}
	}
}

// renew puts d back as a fresh copy and acks it when the broker has counted RenewAt deliveries
// of it: deliveries held by consumers that died or lost their channel, which are no fault of
// the message, and which would otherwise reach the queue's DeliveryLimit and dead-letter it.
// The copy carries the deliveries counted so far in HeaderRedeliveries; at RedeliveryLimit d is
// dead-lettered instead. It reports whether d was settled; when not, d is to be handled as is.
func (cons *consumer) renew(ctx context.Context, d amqp.Delivery) bool {
	if ctx.Err() != nil {
		return false // stopping: it is handled as it is, or goes back with the channel
	}
	count := intHeader(d, headerDeliveryCount)
	total := Redeliveries(d) + count
	switch arrive(count, Redeliveries(d)) {
	case handle:
		return false
	case tooOften:
		cons.deadLetter(ctx, d, fmt.Errorf("delivered %d times without its handler ever finishing: handling it kills the consumer", total))
		return true
	}
	cons.log.WarnContext(ctx, "event redelivered often, renewing it", "deliveries", total, "event_id", d.MessageId, "order_id", d.CorrelationId)
	consumed.WithLabelValues(cons.queue, d.Type, "renewed").Inc()
	headers := failureHeaders(d)
	headers[HeaderRedeliveries] = int64(total)
	return cons.putBack(ctx, d, headers)
}

// Redeliveries is how many deliveries the broker counted of d's earlier copies
// (HeaderRedeliveries).
func Redeliveries(d amqp.Delivery) int { return intHeader(d, HeaderRedeliveries) }

// retryLater puts d back at the end of its queue with its failures counted (HeaderFailures),
// then acks it. The broker's own delivery count cannot serve: it also counts the deliveries a
// consumer held when it died. When the copy cannot be published, d is requeued, spending one
// of the broker's deliveries instead (DeliveryLimit, the safety net).
func (cons *consumer) retryLater(ctx context.Context, d amqp.Delivery, err error, failures int) {
	cons.log.ErrorContext(ctx, "handler keeps failing, retrying later", "err", err, "failures", failures,
		"event_id", d.MessageId, "order_id", d.CorrelationId)
	consumed.WithLabelValues(cons.queue, d.Type, "requeued").Inc()
	headers := failureHeaders(d)
	headers[HeaderFailures] = int64(failures)
	headers[HeaderReason] = err.Error()
	if !cons.putBack(ctx, d, headers) {
		if err := d.Nack(false, true); err != nil {
			cons.log.WarnContext(ctx, "nack failed", "err", err)
		}
	}
}

// putBack publishes a copy of d with headers at the end of its queue, then acks d. It reports
// false, leaving d unsettled, when the copy could not be published.
func (cons *consumer) putBack(ctx context.Context, d amqp.Delivery, headers amqp.Table) bool {
	delete(headers, headerDeliveryCount) // the broker's count of the old copy, not of this one
	if err := cons.copyTo(ctx, RetryRoutingKey(cons.queue), d, headers); err != nil {
		cons.log.WarnContext(ctx, "putting the event back failed", "err", err, "event_id", d.MessageId)
		return false
	}
	// A crash before this ack leaves both copies in the queue: the inbox absorbs the second.
	if err := d.Ack(false); err != nil {
		cons.log.WarnContext(ctx, "ack failed", "err", err)
	}
	return true
}

// Failures is how many times consumers' handlers have failed on d so far (HeaderFailures).
func Failures(d amqp.Delivery) int { return intHeader(d, HeaderFailures) }

// intHeader is d's integer header key, 0 when absent.
func intHeader(d amqp.Delivery, key string) int {
	switch n := d.Headers[key].(type) {
	case int64:
		return int(n)
	case int32:
		return int(n)
	case int:
		return n
	}
	return 0
}

// failureHeaders returns a copy of d's headers that names where d was first published: a
// message put back for another try arrives through DeadLetterExchange, but its dead letter
// must name the exchange and routing key it came by.
func failureHeaders(d amqp.Delivery) amqp.Table {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	if _, ok := headers[HeaderExchange]; !ok {
		headers[HeaderExchange] = d.Exchange
		headers[HeaderRoutingKey] = d.RoutingKey
	}
	return headers
}

// Middleware wraps a Handler in behaviour of its own. Every consumer's handler is wrapped in
// Timeout, instrumentation (a span and metrics per call) and Recoverer; what then becomes of the
// batch, from the error the chain returns, is decide's.
type Middleware func(Handler) Handler

// Chain wraps h in ms, the first outermost.
func Chain(h Handler, ms ...Middleware) Handler {
	for i := len(ms) - 1; i >= 0; i-- {
		h = ms[i](h)
	}
	return h
}

// Timeout bounds each call of the handler to d. A consumer that is stopped finishes the batch
// in hand, so it also bounds how long a stop waits.
func Timeout(d time.Duration) Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, batch []amqp.Delivery) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return h(ctx, batch)
		}
	}
}

// Recoverer turns a panic in the handler into an error: a message that panics its handler
// counts failures like any other, instead of crashing the process, which only the broker's
// safety net would count.
func Recoverer(log *slog.Logger) Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, batch []amqp.Delivery) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.ErrorContext(ctx, "handler panicked", "panic", r, "stack", string(debug.Stack()))
					err = fmt.Errorf("handler panicked: %v", r)
				}
			}()
			return h(ctx, batch)
		}
	}
}

// instrument makes each call a span linked to the deliveries' traces and measures its time and
// batch size, by queue.
func instrument(queue string) Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, batch []amqp.Delivery) error {
			ctx, span := startBatch(ctx, queue, batch)
			start := time.Now()
			err := h(ctx, batch)
			endSpan(span, err)
			handlerSeconds.WithLabelValues(queue).Observe(time.Since(start).Seconds())
			batchSize.WithLabelValues(queue).Observe(float64(len(batch)))
			return err
		}
	}
}

// settle dead-letters the rejected deliveries of a batch that took effect, then acks the rest.
func (cons *consumer) settle(ctx context.Context, batch []amqp.Delivery, rejected Rejected) {
	var ok []amqp.Delivery
	for i, d := range batch {
		if err, bad := rejected[i]; bad {
			cons.deadLetter(ctx, d, err)
		} else {
			ok = append(ok, d)
		}
	}
	cons.ack(ok)
}

// ack acks a batch with one multiple-ack on its last delivery when its tags follow each other:
// every earlier delivery of the channel is settled by then, because batches are handled one at
// a time, in delivery order, and none is taken after a stop. Otherwise each is acked alone.
func (cons *consumer) ack(batch []amqp.Delivery) {
	for _, d := range batch {
		consumed.WithLabelValues(cons.queue, d.Type, "ok").Inc()
	}
	// A failed ack means the channel is gone: the broker redelivers and the inbox absorbs it.
	if len(batch) > 1 && contiguous(batch) {
		last := batch[len(batch)-1]
		if err := last.Ack(true); err != nil {
			cons.log.Warn("ack failed", "err", err, "event_id", last.MessageId)
		}
		return
	}
	for _, d := range batch {
		if err := d.Ack(false); err != nil {
			cons.log.Warn("ack failed", "err", err, "event_id", d.MessageId)
			return
		}
	}
}

// contiguous reports whether the batch's delivery tags follow each other, so that one
// multiple-ack on the last settles exactly these: not so when some were dead-lettered.
func contiguous(batch []amqp.Delivery) bool {
	for i := 1; i < len(batch); i++ {
		if batch[i].DeliveryTag != batch[i-1].DeliveryTag+1 {
			return false
		}
	}
	return true
}

// deadLetter moves a delivery to the queue's dead-letter queue with the reason in its headers,
// then acks it. If that publish fails, the delivery is rejected and the broker dead-letters it
// with its own x-death headers instead: either way it is kept.
func (cons *consumer) deadLetter(ctx context.Context, d amqp.Delivery, reason error) {
	cons.log.ErrorContext(ctx, "dead-lettering event", "err", reason, "event_id", d.MessageId, "order_id", d.CorrelationId, "type", d.Type)
	consumed.WithLabelValues(cons.queue, d.Type, "dead_lettered").Inc()
	headers := failureHeaders(d)
	headers[HeaderReason] = reason.Error()
	headers[HeaderQueue] = cons.queue
	headers[HeaderFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if err := cons.copyTo(ctx, cons.queue, d, headers); err != nil {
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

// copyTo publishes a copy of d with headers through DeadLetterExchange by routingKey (a queue's
// dead-letter queue, or the queue itself for another try), and waits for its confirm.
func (cons *consumer) copyTo(ctx context.Context, routingKey string, d amqp.Delivery, headers amqp.Table) error {
	msg := Message{
		Exchange:      DeadLetterExchange,
		RoutingKey:    routingKey,
		MessageID:     d.MessageId,
		Type:          d.Type,
		ContentType:   d.ContentType,
		CorrelationID: d.CorrelationId,
		Timestamp:     d.Timestamp,
		Headers:       headers,
		Body:          d.Body,
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := cons.dl.Publish(ctx, []Message{msg})
	if err == nil && !res[0] {
		err = errors.New("not confirmed")
	}
	return err
}

// Headers set on dead letters by consumers.
const (
	HeaderReason     = "x-ordersaga-reason"
	HeaderQueue      = "x-ordersaga-queue"
	HeaderExchange   = "x-ordersaga-exchange"
	HeaderRoutingKey = "x-ordersaga-routing-key"
	HeaderFailedAt   = "x-ordersaga-failed-at"
	// HeaderFailures counts the handler failures of a message put back for another try.
	HeaderFailures = "x-ordersaga-failures"
	// HeaderRedeliveries counts the broker's deliveries of a message's earlier, renewed copies.
	HeaderRedeliveries = "x-ordersaga-redeliveries"
)

// headerDeliveryCount is the header in which a quorum queue counts a message's deliveries
// before this one; the first delivery has none.
const headerDeliveryCount = "x-delivery-count"

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
