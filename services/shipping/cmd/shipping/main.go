// Command shipping runs shipping-service: it schedules the shipment of each order whose stock
// is reserved, or reports that the carrier refused it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/money"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/services/shipping/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/shipping/internal/postgres"
	"github.com/ordersaga/ordersaga/services/shipping/internal/shipping"
)

func main() {
	log := server.Logger("shipping")
	if err := run(context.Background(), log); err != nil {
		log.Error("shipping-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	baseFreight, err := money.Parse(config.String("SHIPPING_BASE_FREIGHT", "10.00"))
	if err != nil {
		return fmt.Errorf("SHIPPING_BASE_FREIGHT: %w", err)
	}
	failureRate, err := config.Float("SHIPPING_FAILURE_RATE", 0)
	if err != nil {
		return err
	}
	carrier, err := shipping.NewCarrier(baseFreight, failureRate, shipping.Env{})
	if err != nil {
		return err
	}
	amqpURL, dbURL, err := connectionURLs()
	if err != nil {
		return err
	}
	opsAddr := config.String("SHIPPING_OPS_ADDR", ":9104")

	pool, err := database.Open(ctx, dbURL, log, postgres.Migrations, inbox.Migrations, outbox.Migrations)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("connect to broker: %w", err)
	}
	defer conn.Close()

	handlers := eventhandler.New(postgres.NewRepository(pool), carrier, log).ByRoutingKey()
	subs := broker.SubscriptionsOf(eventhandler.Service)
	for _, sub := range subs {
		if handlers[sub.RoutingKey] == nil {
			return fmt.Errorf("no handler for %s", sub.RoutingKey)
		}
	}
	relay := outbox.NewRelay(pool, conn, log)
	g, ctx := errgroup.WithContext(ctx)
	for _, sub := range subs {
		g.Go(func() error {
			return conn.Consume(ctx, sub.Queue(), relay.WakeAfter(handlers[sub.RoutingKey]), broker.ConsumerOptions{})
		})
	}
	g.Go(func() error { return relay.Run(ctx) })
	g.Go(func() error { return conn.WatchDeadLetters(ctx, broker.SubscriptionsOf("shipping"), 15*time.Second) })
	ops := server.Ops(map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	})
	g.Go(func() error { return server.ServeHTTP(ctx, log, "ops", opsAddr, ops) })
	log.InfoContext(ctx, "shipping-service started")
	err = g.Wait()
	log.Info("shipping-service stopped")
	return err
}

// connectionURLs returns the broker and database URLs, with the passwords of
// AMQP_PASSWORD_FILE and SHIPPING_DATABASE_PASSWORD_FILE when those are set.
func connectionURLs() (amqpURL, dbURL string, err error) {
	amqpURL, err = config.URLWithPasswordFile(config.String("AMQP_URL", "amqp://guest:guest@localhost:5672/"), "AMQP_PASSWORD_FILE")
	if err != nil {
		return "", "", err
	}
	dbURL, err = config.URLWithPasswordFile(config.String("SHIPPING_DATABASE_URL",
		"postgres://postgres@localhost:5432/shippingdb?sslmode=disable"), "SHIPPING_DATABASE_PASSWORD_FILE")
	return amqpURL, dbURL, err
}
