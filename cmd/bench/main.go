// Command bench measures the whole system on this machine: it starts the four services on
// fresh databases and a fresh RabbitMQ virtual host, places orders at a fixed rate (open loop)
// and then as fast as the system takes them (closed loop), follows every order to its final
// status, and prints throughput and create→final latency next to this machine's PostgreSQL
// commit rate. Everything it creates is removed on exit, Ctrl-C included.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
)

type config struct {
	rate        float64
	duration    time.Duration
	concurrency int
	drain       time.Duration
	conns       int
	logLevel    string
	dbParams    string
	keep        bool
}

func main() {
	var cfg config
	flag.Float64Var(&cfg.rate, "rate", 100, "orders per second in the open-loop run")
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "length of each run")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "workers in the closed-loop run")
	flag.DurationVar(&cfg.drain, "drain", 60*time.Second, "how long to wait for orders still in flight after a run")
	flag.IntVar(&cfg.conns, "conns", 4, "gRPC connections to order-service")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "LOG_LEVEL of the services")
	flag.StringVar(&cfg.dbParams, "db-params", "", `query parameters added to the services' database URLs, e.g. "pool_max_conns=16"`)
	flag.BoolVar(&cfg.keep, "keep", false, "keep the services' logs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	fmt.Printf("measuring the PostgreSQL baseline (%d connections, 2 × %s)...\n", baselineConns, baselineDuration)
	base, err := postgresBaseline(ctx)
	if err != nil {
		return fmt.Errorf("postgres baseline: %w", err)
	}

	logDir, err := os.MkdirTemp("", "ordersaga-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Printf("service logs in %s\n", logDir)
	} else {
		defer os.RemoveAll(logDir)
	}
	defer stack.RemoveBinaries()

	fmt.Println("starting the stack...")
	s, teardown, err := stack.StartWith(ctx, stack.Options{
		Replicas:       1,
		Env:            map[string]string{"LOG_LEVEL": cfg.logLevel},
		DatabaseParams: cfg.dbParams,
	}, logDir)
	if err != nil {
		return err
	}
	defer teardown()

	var clients []orderv1.OrderServiceClient
	for range max(cfg.conns, 1) {
		// Separate connections so that one HTTP/2 connection's writer is not what is measured.
		cc, err := grpc.NewClient(s.OrderGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		clients = append(clients, orderv1.NewOrderServiceClient(cc))
	}
	product := uuid.NewString()
	if _, err := s.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: product, Quantity: 1 << 40}); err != nil {
		return fmt.Errorf("seed product: %w", err)
	}
	l := &load{clients: clients, product: product, drain: cfg.drain}

	fmt.Printf("open loop: %.0f orders/s for %s...\n", cfg.rate, cfg.duration)
	open := l.openLoop(ctx, cfg.rate, cfg.duration)
	open.name = fmt.Sprintf("open loop %.0f/s × %s", cfg.rate, cfg.duration)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("closed loop: %d workers for %s...\n", cfg.concurrency, cfg.duration)
	closed := l.closedLoop(ctx, cfg.concurrency, cfg.duration)
	closed.name = fmt.Sprintf("closed loop %d workers × %s", cfg.concurrency, cfg.duration)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	fmt.Println()
	fmt.Printf("machine: %d CPUs (nproc)\n", runtime.NumCPU())
	fmt.Printf("PostgreSQL baseline: %.0f commits/s (single-row INSERT per transaction, %d connections, %s); %.0f commits/s with a NOTIFY in each\n",
		base.commits, baselineConns, baselineDuration, base.notifyCommits)
	fmt.Println("services: 1 replica each; RabbitMQ and PostgreSQL on the same machine")
	fmt.Println()
	printTable(os.Stdout, []*result{open, closed})
	return nil
}
