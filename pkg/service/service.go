// Package service runs one of the saga's services: the lifecycle every service shares, so that
// a service's main only wires its rules and ports.
//
// Main builds, in order: the configuration, tracing, the database pool (ping, migrate), the
// broker connections (one for publishing, one for consuming: a broker alarm blocks a connection
// that publishes, and must not stop the acks that drain its queues), the outbox relay. It then
// hands a Service to the main's wire function, which adds consumers and servers, and runs
// every part, each in its own goroutine, until SIGINT or SIGTERM. It closes in reverse.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/config"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/inbox"
	"github.com/ordersaga/ordersaga/pkg/outbox"
	"github.com/ordersaga/ordersaga/pkg/server"
	"github.com/ordersaga/ordersaga/pkg/telemetry"
)

// Config is a service's configuration as the runner reads it: its own parts (Runtime) and
// whatever else the service's wire function needs.
type Config interface {
	Runtime() config.Runtime
}

// Service is a running service as its wire function sees it: the shared parts to build rules
// and ports on, and the means to add what runs beside them.
type Service struct {
	Name    string // as in the catalog: "order", "payment", …
	Log     *slog.Logger
	Pool    *pgxpool.Pool
	Relay   *outbox.Relay
	Metrics prometheus.Registerer // where the service's own metrics go

	security *server.Security
	self     credentials.TransportCredentials // for dialing the service's own gRPC port
	detached context.Context                  // ends once every part has stopped
	consume  *broker.Conn
	publish  *broker.Conn
	health   *health.Server
	metrics  *grpcprom.ServerMetrics
	checks   map[string]server.Check
	parts    []func(ctx context.Context) error
}

// Main runs the service name (as in the catalog) with configuration C until SIGINT or
// SIGTERM, and exits the process with status 1 when it fails. migrations are the service's
// schema; wire adds its rules and ports.
//
// Run with config.FlagVars or config.FlagCheck, it answers about C instead (config.Inspect).
func Main[C Config](name string, migrations []database.Migrations, wire func(ctx context.Context, s *Service, cfg C) error) {
	if status, done := config.Inspect[C](os.Args[1:], os.Getenv, os.Stdout, os.Stderr); done {
		os.Exit(status)
	}
	cfg, err := config.Load[C](os.Getenv)
	log := server.Logger(name, cfg.Runtime().Log)
	if err == nil {
		server.LogConfig(log, cfg.Runtime().Log.Format, config.LogValue[C](os.Getenv))
		err = run(context.Background(), name, log, cfg, migrations, wire)
	}
	if err != nil {
		log.Error(name+"-service failed", "err", err)
		os.Exit(1)
	}
}

func run[C Config](ctx context.Context, name string, log *slog.Logger, cfg C, migrations []database.Migrations, wire func(context.Context, *Service, C) error) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rt := cfg.Runtime()
	stopTracing, err := telemetry.Setup(ctx, name, os.Getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	s := &Service{Name: name, Log: log, Metrics: prometheus.DefaultRegisterer, health: health.NewServer()}
	if s.security, err = server.NewSecurity(ctx, rt.Security, log); err != nil {
		return err
	}
	if s.self, err = s.security.SelfCredentials(); err != nil {
		return err
	}
	detached, stopDetached := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDetached()
	s.detached = detached
	if s.Pool, err = database.Open(ctx, rt.Database.URL.String(), log, migrations...); err != nil {
		return stopped(ctx, fmt.Errorf("open database: %w", err))
	}
	defer s.Pool.Close()
	if s.publish, err = broker.Dial(ctx, rt.Broker.AMQPURL, log.With("connection", "publish")); err != nil {
		return stopped(ctx, fmt.Errorf("connect to broker: %w", err))
	}
	defer s.publish.Close()
	// A stop under a broker alarm must not wait for the alarm to end.
	s.publish.DropWhenBlocked(ctx)
	if s.consume, err = broker.Dial(ctx, rt.Broker.AMQPURL, log.With("connection", "consume")); err != nil {
		return stopped(ctx, fmt.Errorf("connect to broker: %w", err))
	}
	defer s.consume.Close()
	s.consume.DropWhenBlocked(ctx)
	s.Relay = outbox.NewRelay(s.Pool, s.publish, log)
	s.checks = map[string]server.Check{
		"database":         s.Pool.Ping,
		"broker (publish)": s.publish.Check,
		"broker (consume)": s.consume.Check,
		"relay":            s.Relay.Check,
	}
	s.Go(s.Relay.Run)
	s.Go(func(ctx context.Context) error { return inbox.Retain(ctx, s.Pool, log, rt.Inbox.Retention) })
	if err := wire(ctx, s, cfg); err != nil {
		return err
	}
	ops := server.Ops(s.checks)
	s.Go(func(ctx context.Context) error { return server.ServeHTTP(ctx, log, "ops", rt.OpsAddr.String(), ops) })

	g, gctx := errgroup.WithContext(ctx)
	for _, part := range s.parts {
		g.Go(func() error { return part(gctx) })
	}
	log.InfoContext(ctx, name+"-service started")
	err = g.Wait()
	log.Info(name + "-service stopped")
	return err
}

// stopped is err, or nil when the process was told to stop before it could start.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Go runs part beside the service's other parts until ctx ends; an error from it stops the
// service.
func (s *Service) Go(part func(ctx context.Context) error) { s.parts = append(s.parts, part) }

// Check adds a readiness check to /readyz and the gRPC health of the service's APIs.
func (s *Service) Check(name string, check server.Check) { s.checks[name] = check }

// Rules is a service's rules, one per event it consumes, as broker handlers.
type Rules interface {
	Handlers() (map[catalog.Subscription]broker.Handler, error)
}

// Consume consumes every queue of the service with its rules, and watches the queues'
// dead-letter queues. It fails when the rules do not match the catalog's subscriptions.
func (s *Service) Consume(rules Rules) error {
	handlers, err := rules.Handlers()
	if err != nil {
		return err
	}
	for sub, h := range handlers {
		consumer := s.consume.Consumer(sub.Queue(), h, broker.ConsumerOptions{Publish: s.publish})
		s.Check("consumer "+sub.Queue(), consumer.Check)
		s.Go(consumer.Run)
	}
	s.Go(func(ctx context.Context) error {
		return s.consume.WatchDeadLetters(ctx, catalog.SubscriptionsOf(s.Name), 15*time.Second)
	})
	return nil
}

// ServeGRPC serves the APIs that register adds on addr, on the one gRPC server setup every
// service shares (server.NewGRPC), with token checks requiring scope ("" for any valid token);
// opts add to the setup (a smaller message limit). Their health follows the service's
// readiness.
func (s *Service) ServeGRPC(addr config.Addr, scope string, register func(*grpc.Server), opts ...grpc.ServerOption) error {
	m, err := s.grpcMetrics()
	if err != nil {
		return err
	}
	srv := server.NewGRPC(s.Log, m, s.health, register, append(opts, s.security.GRPCOptions(scope)...)...)
	names := server.ServiceNames(srv)
	s.Go(func(ctx context.Context) error {
		return server.FollowReadiness(ctx, s.Log, s.health, s.checks, time.Second, names...)
	})
	s.Go(func(ctx context.Context) error { return server.ServeGRPC(ctx, s.Log, addr.String(), srv) })
	return nil
}

// ServeHTTP serves h on addr, over TLS when the service's security turns it on.
func (s *Service) ServeHTTP(name string, addr config.Addr, h http.Handler) {
	s.Go(func(ctx context.Context) error {
		return server.ServeHTTPTLS(ctx, s.Log, name, addr.String(), h, s.security.TLS)
	})
}

// SelfCredentials are the credentials for dialing the service's own gRPC port: nil without
// TLS.
func (s *Service) SelfCredentials() credentials.TransportCredentials { return s.self }

// Detached is a context that ends only once every part of the service has stopped: for a
// client of the service's own port (the REST gateway) whose calls must outlive the servers'
// graceful stop.
func (s *Service) Detached() context.Context { return s.detached }

func (s *Service) grpcMetrics() (*grpcprom.ServerMetrics, error) {
	if s.metrics != nil {
		return s.metrics, nil
	}
	m, err := telemetry.GRPCServerMetrics(prometheus.DefaultRegisterer)
	if err != nil {
		return nil, fmt.Errorf("register gRPC metrics: %w", err)
	}
	s.metrics = m
	return m, nil
}
