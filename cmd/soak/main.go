// Command soak runs the saga for a long time at a steady open-loop rate and watches for what a
// short benchmark cannot see: memory, goroutines, file descriptors, database connections or
// tables that keep growing, and invariants that break only after a while. It starts the four
// services on fresh databases and a fresh RabbitMQ virtual host, prints one row of figures per
// interval, and at the end a summary; it exits non-zero when an invariant failed or something
// grew beyond its bound (see checks.go). Everything it creates is removed on exit, Ctrl-C
// included.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
)

type config struct {
	duration       time.Duration
	rate           float64
	interval       time.Duration
	drain          time.Duration
	products       int
	inboxRetention time.Duration
	logLevel       string
	keep           bool
}

func main() {
	cfg := config{}
	flag.DurationVar(&cfg.duration, "duration", 30*time.Minute, "how long orders are placed")
	flag.Float64Var(&cfg.rate, "rate", 100, "orders started per second (open loop)")
	flag.DurationVar(&cfg.interval, "interval", time.Minute, "one row of figures per interval")
	flag.DurationVar(&cfg.drain, "drain", time.Minute, "how long to wait after the load for the last orders and the queues and outboxes to empty")
	flag.IntVar(&cfg.products, "products", 50, "products the orders are spread over")
	flag.DurationVar(&cfg.inboxRetention, "inbox-retention", 10*time.Minute,
		"INBOX_RETENTION of the services: short, so that a long soak shows the inbox staying bounded")
	flag.StringVar(&cfg.logLevel, "log-level", "warn", "LOG_LEVEL of the services")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the services' logs")
	flag.Parse()
	if cfg.rate <= 0 || cfg.duration <= 0 || cfg.interval <= 0 || cfg.products <= 0 {
		fmt.Fprintln(os.Stderr, "soak: -rate, -duration, -interval and -products must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		stop()
		os.Exit(1)
	}
}

// errFailed is returned when the soak ran to its end but a check failed.
var errFailed = errors.New("checks failed")

func run(ctx context.Context, cfg config, out, progress io.Writer) error {
	logDir, err := os.MkdirTemp("", "ordersaga-soak-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintf(progress, "service logs in %s\n", logDir)
	} else {
		defer os.RemoveAll(logDir)
	}
	defer stack.RemoveBinaries()
	fmt.Fprintln(progress, "starting the stack...")
	s, teardown, err := stack.StartWith(ctx, stack.Options{Env: map[string]string{
		"LOG_LEVEL":       cfg.logLevel,
		"INBOX_RETENTION": cfg.inboxRetention.String(),
	}}, logDir)
	if err != nil {
		return err
	}
	defer teardown()

	pools := map[string]*pgxpool.Pool{}
	for _, svc := range stack.Services {
		pc, err := pgxpool.ParseConfig(s.DatabaseURLs[svc])
		if err != nil {
			return err
		}
		pc.MaxConns = 2
		pc.ConnConfig.RuntimeParams["application_name"] = appName
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fmt.Errorf("open %s database: %w", svc, err)
		}
		defer pool.Close()
		pools[svc] = pool
	}
	conn, err := broker.Dial(ctx, s.AMQPURL, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer conn.Close()

	l := &load{}
	for range 2 {
		cc, err := grpc.NewClient(s.OrderGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		l.gen.Clients = append(l.gen.Clients, orderv1.NewOrderServiceClient(cc))
	}
	for range cfg.products {
		id := uuid.NewString()
		if _, err := s.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: 1_000_000_000}); err != nil {
			return fmt.Errorf("SetStock: %w", err)
		}
		l.gen.Products = append(l.gen.Products, id)
	}

	sm := &sampler{stack: s, pools: pools}
	rep := &report{cfg: cfg, out: out}
	fmt.Fprintf(progress, "soak: %g orders/s for %s, a row every %s; INBOX_RETENTION=%s\n", cfg.rate, cfg.duration, cfg.interval, cfg.inboxRetention)
	rep.header()

	began := time.Now()
	follow, cancelFollow := context.WithTimeout(ctx, cfg.duration+cfg.drain)
	defer cancelFollow()
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		l.run(ctx, follow, cfg.rate, cfg.duration)
	}()

	var prev totals
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	var sampleErr error
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case <-loaded:
			break sampling
		case <-tick.C:
		}
		var w window
		w, prev = l.since(prev)
		procs, tabs, err := sm.sample(ctx)
		if err != nil {
			sampleErr = err
			break sampling
		}
		rep.add(sample{at: time.Since(began), window: w, procs: procs, tables: tabs})
	}
	if sampleErr != nil {
		return sampleErr
	}
	<-loaded
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Quiescence: every order final, every queue and outbox empty, or the drain is over.
	fmt.Fprintln(progress, "load done; waiting for the saga to settle...")
	settled := time.Now().Add(cfg.drain)
	var st settlement
	for {
		st, err = settle(ctx, pools, conn)
		if err != nil {
			return err
		}
		if st.quiet() || time.Now().After(settled) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	var w window
	w, prev = l.since(prev)
	procs, tabs, err := sm.sample(ctx)
	if err != nil {
		return err
	}
	rep.add(sample{at: time.Since(began), window: w, procs: procs, tables: tabs})

	actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	violations, err := ops.Audit(actx, ops.Databases{Order: pools["order"], Payment: pools["payment"], Inventory: pools["inventory"], Shipping: pools["shipping"]}, time.Time{})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	dlqs, err := ops.DeadLetterQueues(actx, conn)
	if err != nil {
		return fmt.Errorf("dead-letter queues: %w", err)
	}
	failures := rep.summary(prev, st, violations, dlqs)
	if failures > 0 {
		return fmt.Errorf("%w: %d", errFailed, failures)
	}
	return nil
}
