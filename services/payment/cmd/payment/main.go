// Command payment runs payment-service: it charges each new order through the simulated gateway
// and reverses the payment when the saga compensates.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

func main() {
	log := server.Logger("payment")
	if err := run(context.Background(), log); err != nil {
		log.Error("payment-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	limit, err := money.Parse(config.String("PAYMENT_AMOUNT_LIMIT", "10000.00"))
	if err != nil {
		return fmt.Errorf("PAYMENT_AMOUNT_LIMIT: %w", err)
	}
	declineRate, err := config.Float("PAYMENT_DECLINE_RATE", 0)
	if err != nil {
		return err
	}
	gateway, err := payment.NewGateway(limit, declineRate, rand.Float64)
	if err != nil {
		return err
	}
	amqpURL, dbURL, err := connectionURLs()
	if err != nil {
		return err
	}
	opsAddr := config.String("PAYMENT_OPS_ADDR", ":9102")

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

	handlers := eventhandler.New(postgres.NewRepository(pool), gateway, log).ByRoutingKey()
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
	g.Go(func() error { return conn.WatchDeadLetters(ctx, broker.SubscriptionsOf("payment"), 15*time.Second) })
	ops := server.Ops(map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	})
	g.Go(func() error { return server.ServeHTTP(ctx, log, "ops", opsAddr, ops) })
	log.InfoContext(ctx, "payment-service started")
	err = g.Wait()
	log.Info("payment-service stopped")
	return err
}

// connectionURLs returns the broker and database URLs, with the passwords of
// AMQP_PASSWORD_FILE and PAYMENT_DATABASE_PASSWORD_FILE when those are set.
func connectionURLs() (amqpURL, dbURL string, err error) {
	amqpURL, err = config.URLWithPasswordFile(config.String("AMQP_URL", "amqp://guest:guest@localhost:5672/"), "AMQP_PASSWORD_FILE")
	if err != nil {
		return "", "", err
	}
	dbURL, err = config.URLWithPasswordFile(config.String("PAYMENT_DATABASE_URL",
		"postgres://postgres@localhost:5432/paymentdb?sslmode=disable"), "PAYMENT_DATABASE_PASSWORD_FILE")
	return amqpURL, dbURL, err
}
