package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/internal/loadgen"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// floors are the machine's latency floors, measured with nothing else in flight: what one
// commit and one broker hop cost here, and so the least an order's saga can take.
type floors struct {
	commitP50, commitP99 time.Duration // one single-row transaction from one client
	hopP50, hopP99       time.Duration // persistent publish to a quorum queue → confirm and delivery
	// The same, each sample idleGap after the last: what a step costs when the processes it
	// wakes went to sleep meanwhile, as between the orders of a slow open loop.
	idleCommitP50, idleHopP50 time.Duration
}

// criticalPath is the floor of an order's saga: CreateOrder's commit, then four hops
// (order.created → payment.approved → inventory.reserved → shipping.scheduled), each a commit
// and a broker hop.
func (f floors) criticalPath() time.Duration { return f.commitP50 + 4*(f.commitP50+f.hopP50) }

// idleCriticalPath is criticalPath with the idle floors.
func (f floors) idleCriticalPath() time.Duration {
	return f.idleCommitP50 + 4*(f.idleCommitP50+f.idleHopP50)
}

// floorSamples is how many commits and hops each floor is taken from, back to back;
// idleSamples how many of each idle floor, idleGap apart (the gap between orders at 20/s).
const (
	floorSamples = 500
	idleSamples  = 100
	idleGap      = 50 * time.Millisecond
)

// measureFloors measures the floors on a scratch database and virtual host.
func measureFloors(ctx context.Context) (floors, error) {
	var f floors
	commits, err := commitLatencies(ctx, floorSamples, 0)
	if err != nil {
		return f, fmt.Errorf("commit latency: %w", err)
	}
	hops, err := hopLatencies(ctx, floorSamples, 0)
	if err != nil {
		return f, fmt.Errorf("broker hop latency: %w", err)
	}
	f.commitP50, f.commitP99 = loadgen.Percentile(commits, 0.50), loadgen.Percentile(commits, 0.99)
	f.hopP50, f.hopP99 = loadgen.Percentile(hops, 0.50), loadgen.Percentile(hops, 0.99)
	if commits, err = commitLatencies(ctx, idleSamples, idleGap); err != nil {
		return f, fmt.Errorf("idle commit latency: %w", err)
	}
	if hops, err = hopLatencies(ctx, idleSamples, idleGap); err != nil {
		return f, fmt.Errorf("idle broker hop latency: %w", err)
	}
	f.idleCommitP50, f.idleHopP50 = loadgen.Percentile(commits, 0.50), loadgen.Percentile(hops, 0.50)
	return f, nil
}

// commitLatencies times n single-row INSERTs, each its own synchronously committed
// transaction, one after the other from one connection, gap apart; sorted.
func commitLatencies(ctx context.Context, n int, gap time.Duration) ([]time.Duration, error) {
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		return nil, err
	}
	name := testenv.Name("bench_floor")
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	if err := database.Create(ctx, cfg); err != nil {
		return nil, err
	}
	defer func() {
		if err := testenv.DropDatabase(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE commits (id bigserial PRIMARY KEY, note text)"); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for range n {
		time.Sleep(gap)
		start := time.Now()
		if _, err := conn.Exec(ctx, "INSERT INTO commits (note) VALUES ('floor')"); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out, nil
}

// hopLatencies times n broker hops, one message at a time, gap apart: a persistent publish to
// a quorum queue on one connection until both its confirm and its delivery on another have
// arrived, as a service's relay and the next service's consumer see it; sorted.
func hopLatencies(ctx context.Context, n int, gap time.Duration) ([]time.Duration, error) {
	amqpURL, drop, err := testenv.NewVHost(ctx, "bench")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Fprintln(os.Stderr, "delete floor vhost:", err)
		}
	}()
	pubConn, err := amqp.Dial(amqpURL)
	if err != nil {
		return nil, err
	}
	defer pubConn.Close()
	subConn, err := amqp.Dial(amqpURL)
	if err != nil {
		return nil, err
	}
	defer subConn.Close()
	pub, err := pubConn.Channel()
	if err != nil {
		return nil, err
	}
	const queue = "bench.hop"
	if _, err := pub.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return nil, fmt.Errorf("declare queue: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return nil, err
	}
	confirms := pub.NotifyPublish(make(chan amqp.Confirmation, 1))
	sub, err := subConn.Channel()
	if err != nil {
		return nil, err
	}
	deliveries, err := sub.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/octet-stream", Body: make([]byte, pipeBodySize)}
	out := make([]time.Duration, 0, n)
	for range n {
		time.Sleep(gap)
		start := time.Now()
		if err := pub.PublishWithContext(ctx, "", queue, false, false, msg); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		for confirmed, delivered := false, false; !confirmed || !delivered; {
			select {
			case c, ok := <-confirms:
				if !ok || !c.Ack {
					return nil, errors.New("publish not confirmed")
				}
				confirmed = true
			case d, ok := <-deliveries:
				if !ok {
					return nil, errors.New("consumer channel closed")
				}
				if err := d.Ack(false); err != nil {
					return nil, err
				}
				delivered = true
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out, nil
}
