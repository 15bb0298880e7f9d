package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Conn is a RabbitMQ connection that redials with backoff whenever the broker drops it, and
// declares the saga's topology on every (re)connect. Consumers and publishers open their own
// channels through it and reopen them after a reconnect.
//
// The client library's own automatic recovery is left off on purpose: it reopens channels under
// the caller's feet, so an in-flight delivery could be acked by a tag that now names another
// message, and deferred confirms in flight would be lost. Owning the loop keeps each channel's
// lifetime, and so each ack and each confirm, unambiguous.
type Conn struct {
	urls []string // the broker's nodes; a dial tries each, from the one after the last that answered
	next int      // index of the node the next dial tries first
	log  *slog.Logger

	mu       sync.Mutex
	conn     *amqp.Connection
	declared time.Time     // last Redeclare
	blocked  amqp.Blocking // the broker's alarm on the connection, if any
	dropped  bool          // dropped for good by DropWhenBlocked
	ready    chan struct{} // closed while conn is live

	stopping     chan struct{} // closed when the context given to DropWhenBlocked ends
	stoppingOnce sync.Once
	stop         chan struct{}
	done         chan struct{}
}

// Dial connects to the broker, retrying with backoff until ctx ends, declares the topology, and
// keeps the connection alive until Close. url may list several nodes of a cluster separated by
// commas: a dial tries each in turn, so a lost node is survived by reconnecting to another.
func Dial(ctx context.Context, url string, log *slog.Logger) (*Conn, error) {
	var urls []string
	for _, u := range strings.Split(url, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("no broker address")
	}
	c := &Conn{
		urls:     urls,
		log:      log,
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.setConn(conn)
	go c.keepAlive(conn)
	return c, nil
}

func (c *Conn) dial(ctx context.Context) (*amqp.Connection, error) {
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 5 * time.Second
	return backoff.Retry(ctx, func() (*amqp.Connection, error) {
		conn, err := c.dialAny()
		if err != nil {
			c.log.WarnContext(ctx, "broker dial failed, retrying", "err", err)
			return nil, err
		}
		ch, err := conn.Channel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("open channel: %w", err)
		}
		defer ch.Close()
		if err := DeclareTopology(ch); err != nil {
			// Refused rights or a queue declared with other arguments are fixed by an operator
			// or a deploy, not by this process giving up: keep trying, not ready meanwhile.
			c.log.WarnContext(ctx, "declaring the topology failed, retrying", "err", err)
			conn.Close()
			return nil, fmt.Errorf("declare topology: %w", err)
		}
		return conn, nil
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
}

// dialAny dials the nodes in turn, starting after the node of the last connection, so that a
// node that went away is not the first one tried again.
func (c *Conn) dialAny() (*amqp.Connection, error) {
	var errs []error
	for range c.urls {
		i := c.next % len(c.urls)
		c.next = i + 1
		conn, err := amqp.DialConfig(c.urls[i], amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US", Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("node %d: %w", i+1, err))
	}
	return nil, errors.Join(errs...)
}

func (c *Conn) setConn(conn *amqp.Connection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	if conn != nil {
		close(c.ready)
	} else {
		c.ready = make(chan struct{})
	}
}

func (c *Conn) keepAlive(conn *amqp.Connection) {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	stopping := c.stopping
	for {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
		dropped := false
	watch:
		for {
			select {
			case <-c.stop:
				c.close(conn)
				return
			case b := <-blocked:
				// A memory or disk alarm: publishes stall until the broker lifts it.
				c.setBlocked(b)
				if b.Active && stopping == nil {
					dropped = c.drop(conn)
				}
			case <-stopping:
				stopping = nil // seen; a nil channel is never ready
				dropped = c.drop(conn)
			case e := <-closed:
				if !dropped {
					c.log.Warn("broker connection lost, redialing", "err", e)
				}
				break watch
			}
		}
		c.setBlocked(amqp.Blocking{})
		if dropped {
			// Before the connection goes: nobody may start waiting for a redial that never comes.
			c.mu.Lock()
			c.dropped = true
			c.mu.Unlock()
		}
		c.setConn(nil)
		if dropped {
			<-c.stop
			return
		}
		var err error
		conn, err = c.dial(ctx)
		if err != nil {
			return // only when stopped
		}
		c.log.Info("broker connection restored")
		c.setConn(conn)
	}
}

// DropWhenBlocked makes the connection give up on a broker that blocks it, once ctx ends: pass
// the context whose end starts the process's shutdown. A broker under an alarm reads nothing more
// from a blocked connection — not a channel's close, an ack or the connection's own close — so a
// stopping process would otherwise wait as long as the alarm lasts. Dropped instead, the
// connection returns its unacked deliveries to their queues, where the inbox absorbs them again,
// and the events whose publish it had not confirmed stay in the outbox for the next process.
func (c *Conn) DropWhenBlocked(ctx context.Context) {
	go func() {
		select {
		case <-ctx.Done():
			c.stoppingOnce.Do(func() { close(c.stopping) })
		case <-c.done:
		}
	}()
}

// drop closes conn at once, without waiting for the broker, if the broker blocks it; it
// reports whether it did.
func (c *Conn) drop(conn *amqp.Connection) bool {
	c.mu.Lock()
	blocked := c.blocked.Active
	c.mu.Unlock()
	if !blocked {
		return false
	}
	c.log.Warn("stopping while the broker blocks the connection: dropping it")
	// A deadline already past closes the socket as soon as the close frame is written; every
	// call waiting on a channel of the connection then fails instead of waiting for the broker.
	go conn.CloseDeadline(time.Now())
	return true
}

// close closes conn, waiting for the broker's answer unless the broker blocks it.
func (c *Conn) close(conn *amqp.Connection) {
	c.mu.Lock()
	blocked := c.blocked.Active
	c.mu.Unlock()
	if blocked {
		_ = conn.CloseDeadline(time.Now())
		return
	}
	_ = conn.Close()
}

// Close closes the connection and stops redialing. Close consumers and publishers first.
func (c *Conn) Close() {
	close(c.stop)
	<-c.done
}

// Connected reports whether the connection is up, for readiness checks.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && !c.conn.IsClosed()
}

// Channel opens a channel, waiting for the connection to come back when it is down.
func (c *Conn) Channel(ctx context.Context) (*amqp.Channel, error) {
	for {
		c.mu.Lock()
		conn, ready, dropped := c.conn, c.ready, c.dropped
		c.mu.Unlock()
		if dropped {
			return nil, errors.New("broker connection dropped: stopping under a broker alarm")
		}
		if conn != nil {
			ch, err := conn.Channel()
			if err == nil {
				return ch, nil
			}
			if !errors.Is(err, amqp.ErrClosed) {
				return nil, fmt.Errorf("open channel: %w", err)
			}
			// The connection died but keepAlive has not noticed yet.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Redeclare declares the topology again, at most once a second however often it is asked: a
// consumer whose queue went away or a publisher whose messages came back unroutable calls it,
// so that a queue or exchange deleted under running services comes back by itself.
func (c *Conn) Redeclare(ctx context.Context) error {
	c.mu.Lock()
	if time.Since(c.declared) < time.Second {
		c.mu.Unlock()
		return nil
	}
	c.declared = time.Now()
	c.mu.Unlock()
	ch, err := c.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := DeclareTopology(ch); err != nil {
		return fmt.Errorf("redeclare topology: %w", err)
	}
	c.log.InfoContext(ctx, "topology declared again")
	return nil
}

// Check reports whether the connection is up, as a readiness check.
func (c *Conn) Check(context.Context) error {
	if !c.Connected() {
		return errors.New("not connected")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blocked.Active {
		return fmt.Errorf("blocked by the broker: %s", c.blocked.Reason)
	}
	return nil
}

func (c *Conn) setBlocked(b amqp.Blocking) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.Active != c.blocked.Active {
		if b.Active {
			c.log.Warn("broker blocked the connection", "reason", b.Reason)
		} else if c.conn != nil {
			c.log.Info("broker unblocked the connection")
		}
	}
	c.blocked = b
}
