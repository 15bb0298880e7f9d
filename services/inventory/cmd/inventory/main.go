// Command inventory runs inventory-service: it reserves the stock of paid orders, releases it
// when shipping fails, and serves the admin gRPC API that sets stock.
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

	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

func main() {
	log := server.Logger("inventory")
	if err := run(context.Background(), log); err != nil {
		log.Error("inventory-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	grpcAddr := config.String("INVENTORY_GRPC_ADDR", ":50052")
	opsAddr := config.String("INVENTORY_OPS_ADDR", ":9103")
	amqpURL, dbURL, err := connectionURLs()
	if err != nil {
		return err
	}
	sec, err := security(ctx, log)
	if err != nil {
		return err
	}

	pool, err := database.Open(ctx, dbURL, log, postgres.AllMigrations()...)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		return fmt.Errorf("connect to broker: %w", err)
	}
	defer conn.Close()

	repo := postgres.NewRepository(pool)
	handlers := eventhandler.New(repo, log)
	subs := broker.SubscriptionsOf("inventory")
	consumers := make([]broker.Handler, len(subs))
	for i, sub := range subs {
		if consumers[i], err = handlers.For(sub); err != nil {
			return err
		}
	}

	relay := outbox.NewRelay(pool, conn, log)
	g, ctx := errgroup.WithContext(ctx)
	for i, sub := range subs {
		g.Go(func() error {
			return conn.Consume(ctx, sub.Queue(), relay.WakeAfter(consumers[i]), broker.ConsumerOptions{})
		})
	}
	g.Go(func() error { return relay.Run(ctx) })
	g.Go(func() error { return conn.WatchDeadLetters(ctx, broker.SubscriptionsOf("inventory"), 15*time.Second) })
	admin := grpcapi.NewGRPCServer(repo, log, sec.GRPCOptions(auth.ScopeInventoryAdmin)...)
	g.Go(func() error { return server.ServeGRPC(ctx, log, grpcAddr, admin) })
	ops := server.Ops(map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	})
	g.Go(func() error { return server.ServeHTTP(ctx, log, "ops", opsAddr, ops) })
	log.InfoContext(ctx, "inventory-service started")
	err = g.Wait()
	log.Info("inventory-service stopped")
	return err
}

// connectionURLs returns the broker and database URLs, with the passwords of
// AMQP_PASSWORD_FILE and INVENTORY_DATABASE_PASSWORD_FILE when those are set.
func connectionURLs() (amqpURL, dbURL string, err error) {
	amqpURL, err = config.URLWithPasswordFile(config.String("AMQP_URL", "amqp://guest:guest@localhost:5672/"), "AMQP_PASSWORD_FILE")
	if err != nil {
		return "", "", err
	}
	dbURL, err = config.URLWithPasswordFile(config.String("INVENTORY_DATABASE_URL",
		"postgres://postgres@localhost:5432/inventorydb?sslmode=disable"), "INVENTORY_DATABASE_PASSWORD_FILE")
	return amqpURL, dbURL, err
}

// security reads who may reach the admin port: TLS and token settings (README, "Who may do what").
func security(ctx context.Context, log *slog.Logger) (*server.Security, error) {
	return server.NewSecurity(ctx, config.String("TLS_CERT_FILE", ""), config.String("TLS_KEY_FILE", ""), auth.Config{
		JWKSFile: config.String("AUTH_JWKS_FILE", ""),
		JWKSURL:  config.String("AUTH_JWKS_URL", ""),
		Issuer:   config.String("AUTH_ISSUER", ""),
		Audience: config.String("AUTH_AUDIENCE", ""),
	}, log)
}
