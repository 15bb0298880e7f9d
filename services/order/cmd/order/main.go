// Command order runs order-service: the public OrderService API (gRPC and REST) and the saga's
// order side, which follows each order's progress from the other services' events.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/health"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
	"github.com/ordersaga/ordersaga/services/order/internal/deadline"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func main() {
	cfg, err := config.Load[config.Order](os.Getenv)
	log := server.Logger("order", cfg.Log)
	if err == nil {
		server.LogConfig(log, cfg.Log.Format, cfg)
		err = run(context.Background(), log, cfg)
	}
	if err != nil {
		log.Error("order-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, cfg config.Order) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopTracing, err := telemetry.Setup(ctx, "order", os.Getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	var (
		amqpURL  = cfg.Broker.AMQPURL
		dbURL    = cfg.Database.URL
		grpcAddr = cfg.GRPCAddr.String()
		httpAddr = cfg.HTTPAddr.String()
		opsAddr  = cfg.OpsAddr.String()
	)
	sec, err := server.NewSecurity(ctx, cfg.Security, log)
	if err != nil {
		return err
	}

	pool, err := database.Open(ctx, dbURL, log, postgres.Migrations...)
	if err != nil {
		return err
	}
	defer pool.Close()
	conn, err := broker.Dial(ctx, amqpURL, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.DropWhenBlocked(ctx) // a stop under a broker alarm must not wait for the alarm to end

	relay := outbox.NewRelay(pool, conn, log)
	repo := postgres.NewRepository(pool)
	repo.AfterOutboxCommit(relay.Publish)
	feed := postgres.NewStatusFeed(pool, log)
	repo.AfterStatusCommit(feed.Announce)
	work := unitofwork.New(catalog.Order, pool, relay, log, func(tx database.Querier) eventhandler.Store { return repo.Bind(tx) })
	eventhandler.Register(work, log)
	handlers, err := work.Handlers()
	if err != nil {
		return err
	}
	watch := grpcapi.FeedOf(feed)
	sweeper, err := deadline.New(repo, cfg.Saga.Timeout, log, prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}

	grpcMetrics, err := telemetry.GRPCServerMetrics(prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	// Customers' rights over orders are checked in the service; a valid token is enough here.
	hs := health.NewServer()
	grpcServer := grpcapi.NewGRPCServer(grpcapi.NewServer(repo, watch, log), grpcMetrics, log, hs, sec.GRPCOptions("")...)
	// The gateway's connection outlives the servers' shutdown, so in-flight REST calls finish.
	gwCtx, closeGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer closeGateway()
	selfCreds, err := sec.SelfCredentials()
	if err != nil {
		return err
	}
	gateway, err := grpcapi.Gateway(gwCtx, grpcAddr, grpcapi.GatewayOptions{Creds: selfCreds, AllowedOrigins: cfg.CORS.AllowedOrigins})
	if err != nil {
		return err
	}
	checks := map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	}
	ops := server.Ops(checks)

	g, gctx := errgroup.WithContext(ctx)
	for sub, h := range handlers {
		g.Go(func() error { return conn.Consume(gctx, sub.Queue(), h, broker.ConsumerOptions{}) })
	}
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return inbox.Retain(gctx, pool, log, cfg.Inbox.Retention) })
	g.Go(func() error {
		return conn.WatchDeadLetters(gctx, catalog.SubscriptionsOf(catalog.Order), 15*time.Second)
	})
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error {
		return server.FollowReadiness(gctx, log, hs, checks, time.Second, "", orderv1.OrderService_ServiceDesc.ServiceName)
	})
	g.Go(func() error { return server.ServeGRPC(gctx, log, grpcAddr, grpcServer) })
	g.Go(func() error { return server.ServeHTTPTLS(gctx, log, "rest", httpAddr, gateway, sec.TLS) })
	g.Go(func() error { return server.ServeHTTP(gctx, log, "ops", opsAddr, ops) })
	g.Go(func() error { return sweeper.Run(gctx) })
	err = g.Wait()
	log.Info("order-service stopped")
	return err
}
