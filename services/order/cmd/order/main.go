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

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/services/order/internal/eventhandler"
	"github.com/ordersaga/ordersaga/services/order/internal/grpcapi"
	"github.com/ordersaga/ordersaga/services/order/internal/order"
	"github.com/ordersaga/ordersaga/services/order/internal/postgres"
)

func main() {
	var level slog.Level
	badLevel := level.UnmarshalText([]byte(config.String("LOG_LEVEL", "info")))
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("service", "order")
	if badLevel != nil {
		log.Warn("LOG_LEVEL not understood, logging at info", "err", badLevel)
	}
	if err := run(context.Background(), log); err != nil {
		log.Error("order-service failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		grpcAddr = config.String("ORDER_GRPC_ADDR", ":50051")
		httpAddr = config.String("ORDER_HTTP_ADDR", ":3001")
		opsAddr  = config.String("ORDER_OPS_ADDR", ":9101")
	)
	amqpURL, dbURL, err := connectionURLs()
	if err != nil {
		return err
	}
	sec, err := security(ctx, log)
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

	relay := outbox.NewRelay(pool, conn, log)
	repo := postgres.NewRepository(pool)
	repo.AfterOutboxCommit(relay.Wake)
	feed := postgres.NewStatusFeed(pool, log)
	repo.AfterStatusCommit(feed.Announce)
	handlers := eventhandler.New(repo, log)

	grpcMetrics := grpcprom.NewServerMetrics()
	if err := prometheus.Register(grpcMetrics); err != nil {
		return err
	}
	// Customers' rights over orders are checked in the service; a valid token is enough here.
	grpcServer := grpcapi.NewGRPCServer(grpcapi.NewServer(repo, feed, log), grpcMetrics, log, sec.GRPCOptions("")...)
	// The gateway's connection outlives the servers' shutdown, so in-flight REST calls finish.
	gwCtx, closeGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer closeGateway()
	selfCreds, err := sec.SelfCredentials()
	if err != nil {
		return err
	}
	gateway, err := grpcapi.Gateway(gwCtx, grpcAddr, selfCreds)
	if err != nil {
		return err
	}
	ops := server.Ops(map[string]server.Check{
		"database": pool.Ping,
		"broker":   conn.Check,
	})

	g, gctx := errgroup.WithContext(ctx)
	for _, sub := range broker.SubscriptionsOf("order") {
		h, err := handlers.For(sub)
		if err != nil {
			return err
		}
		g.Go(func() error { return conn.Consume(gctx, sub.Queue(), relay.WakeAfter(h), broker.ConsumerOptions{}) })
	}
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return conn.WatchDeadLetters(gctx, broker.SubscriptionsOf("order"), 15*time.Second) })
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error { return server.ServeGRPC(gctx, log, grpcAddr, grpcServer) })
	g.Go(func() error { return server.ServeHTTPTLS(gctx, log, "rest", httpAddr, gateway, sec.TLS) })
	g.Go(func() error { return server.ServeHTTP(gctx, log, "ops", opsAddr, ops) })
	g.Go(func() error { return countOrders(gctx, log, repo) })
	err = g.Wait()
	log.Info("order-service stopped")
	return err
}

// connectionURLs returns the broker and database URLs, with the passwords of
// AMQP_PASSWORD_FILE and ORDER_DATABASE_PASSWORD_FILE when those are set.
func connectionURLs() (amqpURL, dbURL string, err error) {
	amqpURL, err = config.URLWithPasswordFile(config.String("AMQP_URL", "amqp://guest:guest@localhost:5672/"), "AMQP_PASSWORD_FILE")
	if err != nil {
		return "", "", err
	}
	dbURL, err = config.URLWithPasswordFile(config.String("ORDER_DATABASE_URL",
		"postgres://postgres@localhost:5432/orderdb?sslmode=disable"), "ORDER_DATABASE_PASSWORD_FILE")
	return amqpURL, dbURL, err
}

// security reads who may reach the API ports: TLS and token settings (README, "Who may do what").
func security(ctx context.Context, log *slog.Logger) (*server.Security, error) {
	return server.NewSecurity(ctx, config.String("TLS_CERT_FILE", ""), config.String("TLS_KEY_FILE", ""), auth.Config{
		JWKSFile: config.String("AUTH_JWKS_FILE", ""),
		JWKSURL:  config.String("AUTH_JWKS_URL", ""),
		Issuer:   config.String("AUTH_ISSUER", ""),
		Audience: config.String("AUTH_AUDIENCE", ""),
	}, log)
}

// countOrders keeps the gauge ordersaga_orders{status} up to date until ctx ends.
func countOrders(ctx context.Context, log *slog.Logger, repo *postgres.Repository) error {
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ordersaga_orders",
		Help: "Orders by status.",
	}, []string{"status"})
	if err := prometheus.Register(gauge); err != nil {
		return err
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		counts, err := repo.CountByStatus(ctx)
		if err == nil {
			for _, s := range order.Statuses {
				gauge.WithLabelValues(string(s)).Set(float64(counts[s]))
			}
		} else if ctx.Err() == nil {
			log.WarnContext(ctx, "counting orders failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
