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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/inventory/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/inventory/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/inventory/internal/postgres"
)

func main() {
	cfg, err := config.Load[config.Inventory](os.Getenv)
	log := server.Logger("inventory", cfg.Log)
	if err == nil {
		server.LogConfig(log, cfg.Log.Format, cfg)
		err = run(context.Background(), log, cfg)
	}
	if err != nil {
		log.Error("inventory-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg config.Inventory) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stopTracing, err := telemetry.Setup(ctx, "inventory", os.Getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	dbURL := cfg.Database.URL
	amqpURL := cfg.Broker.AMQPURL
	grpcAddr := cfg.GRPCAddr.String()
	opsAddr := cfg.OpsAddr.String()
	sec, err := server.NewSecurity(ctx, cfg.Security, log)
	if err != nil {
		return err
	}

	pool, err := database.Open(ctx, dbURL, log, postgres.Migrations...)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		return fmt.Errorf("connect to broker: %w", err)
	}
	defer conn.Close()
	conn.DropWhenBlocked(ctx) // a stop under a broker alarm must not wait for the alarm to end

	repo := postgres.NewRepository(pool)
	relay := outbox.NewRelay(pool, conn, log)
	work := unitofwork.New(catalog.Inventory, pool, relay, log, func(tx database.Querier) eventhandler.Store { return postgres.Bind(tx) })
	eventhandler.Register(work, log)
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
		return conn.WatchDeadLetters(ctx, catalog.SubscriptionsOf(catalog.Inventory), 15*time.Second)
	})
	hs := health.NewServer()
	grpcMetrics, err := telemetry.GRPCServerMetrics(prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	unaryMetrics, streamMetrics := telemetry.GRPCMetricsInterceptors(grpcMetrics)
	// Metrics first, so that refused calls are counted too.
	opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(unaryMetrics), grpc.ChainStreamInterceptor(streamMetrics)},
		sec.GRPCOptions(auth.ScopeInventoryAdmin)...)
	admin := grpcapi.NewGRPCServer(repo, log, hs, opts...)
	grpcMetrics.InitializeMetrics(admin)
	g.Go(func() error { return server.ServeGRPC(ctx, log, grpcAddr, admin) })
	checks := map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	}
	g.Go(func() error {
		return server.FollowReadiness(ctx, log, hs, checks, time.Second, inventoryv1.InventoryService_ServiceDesc.ServiceName)
	})
	ops := server.Ops(checks)
	g.Go(func() error { return server.ServeHTTP(ctx, log, "ops", opsAddr, ops) })
	log.InfoContext(ctx, "inventory-service started")
	err = g.Wait()
	log.Info("inventory-service stopped")
	return err
}
