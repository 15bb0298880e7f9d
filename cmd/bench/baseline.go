package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

const baselineConns = 4

// postgresBaseline measures how many single-row transactions per second PostgreSQL commits on
// a scratch database: every saga step costs at least one commit, so it bounds what the system
// can do here.
func postgresBaseline(ctx context.Context, d time.Duration) (float64, error) {
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		return 0, err
	}
	name := testenv.Name("bench_baseline")
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return 0, err
	}
	if err := database.Create(ctx, cfg); err != nil {
		return 0, err
	}
	defer func() {
		if err := testenv.DropDatabase(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	setup, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	_, err = setup.Exec(ctx, "CREATE TABLE commits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)")
	setup.Close(ctx)
	if err != nil {
		return 0, err
	}
	return commitRate(ctx, cfg, "INSERT INTO commits (note) VALUES ('baseline')", d)
}

// commitRate runs stmt (one implicit transaction) in a loop on baselineConns connections for
// d and returns the transactions per second.
func commitRate(ctx context.Context, cfg *pgx.ConnConfig, stmt string, d time.Duration) (float64, error) {
	var commits atomic.Int64
	errs := make([]error, baselineConns)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range baselineConns {
		wg.Go(func() {
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(context.Background())
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					errs[i] = err
					return
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(commits.Load()) / time.Since(start).Seconds(), nil
}

// Shape of the broker baseline: confirms in flight and the consumer's prefetch and ack batch.
const (
	pipeWindow   = 256
	pipePrefetch = 512
	pipeAckEvery = 64
	pipeBodySize = 256 // about an event's protobuf body
)

// brokerBaseline measures the bare broker pipe: persistent messages per second through one
// quorum queue, published with publisher confirms (pipeWindow unconfirmed at most) and consumed
// with a prefetch, acked many at once. Every saga step is at least one such hop, so it bounds
// what the system can do here. It runs on a scratch virtual host, removed afterwards.
func brokerBaseline(ctx context.Context, d time.Duration) (float64, error) {
	amqpURL, drop, err := testenv.NewVHost(ctx, "bench")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Fprintln(os.Stderr, "delete baseline vhost:", err)
		}
	}()

	// Publisher and consumer on their own connections, as the services have them: one
	// connection's frames do not wait behind the other's.
	pubConn, err := amqp.Dial(amqpURL)
	if err != nil {
		return 0, err
	}
	defer pubConn.Close()
	subConn, err := amqp.Dial(amqpURL)
	if err != nil {
		return 0, err
	}
	defer subConn.Close()

	pub, err := pubConn.Channel()
	if err != nil {
		return 0, err
	}
	const queue = "bench.pipe"
	if _, err := pub.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return 0, fmt.Errorf("declare queue: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return 0, err
	}
	confirms := pub.NotifyPublish(make(chan amqp.Confirmation, pipeWindow))

	sub, err := subConn.Channel()
	if err != nil {
		return 0, err
	}
	if err := sub.Qos(pipePrefetch, 0, false); err != nil {
		return 0, err
	}
	deliveries, err := sub.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}

	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var consumed atomic.Int64
	var g errgroup.Group
	g.Go(func() error {
		n := 0
		for {
			select {
			case <-runCtx.Done():
				return nil
			case m, ok := <-deliveries:
				if !ok {
					return errors.New("consumer channel closed")
				}
				n++
				if n%pipeAckEvery == 0 {
					if err := m.Ack(true); err != nil {
						return err
					}
				}
				consumed.Add(1)
			}
		}
	})
	g.Go(func() error {
		body := make([]byte, pipeBodySize)
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/octet-stream", Body: body}
		inFlight := 0
		for runCtx.Err() == nil {
			for inFlight < pipeWindow && runCtx.Err() == nil {
				if err := pub.PublishWithContext(runCtx, "", queue, false, false, msg); err != nil {
					if runCtx.Err() != nil {
						return nil
					}
					return fmt.Errorf("publish: %w", err)
				}
				inFlight++
			}
			select {
			case <-runCtx.Done():
			case c, ok := <-confirms:
				if !ok {
					return errors.New("publisher channel closed")
				}
				if !c.Ack {
					return errors.New("broker nacked a message")
				}
				inFlight--
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(consumed.Load()) / time.Since(start).Seconds(), nil
}
