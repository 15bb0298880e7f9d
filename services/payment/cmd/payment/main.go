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
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/payment/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/payment/internal/payment"
	"github.com/ordersaga/ordersaga/services/payment/internal/postgres"
)

func main() {
	cfg, err := config.Load[config.Payment](os.Getenv)
	log := server.Logger("payment", cfg.Log)
	if err == nil {
		server.LogConfig(log, cfg.Log.Format, cfg)
		err = run(context.Background(), log, cfg)
	}
	if err != nil {
		log.Error("payment-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg config.Payment) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stopTracing, err := telemetry.Setup(ctx, "payment", os.Getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	gateway, err := payment.NewGateway(cfg.AmountLimit.Minor(), float64(cfg.DeclineRate), rand.Float64)
	if err != nil {
		return err
	}
	dbURL := cfg.Database.URL
	amqpURL := cfg.Broker.AMQPURL
	opsAddr := cfg.OpsAddr.String()

	pool, err := database.Open(ctx, dbURL, log, postgres.Migrations...)
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
	conn.DropWhenBlocked(ctx) // a stop under a broker alarm must not wait for the alarm to end

	relay := outbox.NewRelay(pool, conn, log)
	work := unitofwork.New(catalog.Payment, pool, relay, log, func(tx database.Querier) eventhandler.Store { return postgres.Bind(tx) })
	eventhandler.Register(work, gateway, log)
	handlers, err := work.Handlers()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	for sub, h := range handlers {
		g.Go(func() error { return conn.Consume(ctx, sub.Queue(), h, broker.ConsumerOptions{}) })
	}
	g.Go(func() error { return relay.Run(ctx) })
	g.Go(func() error { return inbox.Retain(ctx, pool, log, cfg.Inbox.Retention) })
	g.Go(func() error {
		return conn.WatchDeadLetters(ctx, catalog.SubscriptionsOf(catalog.Payment), 15*time.Second)
	})
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
