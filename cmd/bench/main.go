// Command bench measures the whole system on this machine. It first measures what the machine
// itself allows (PostgreSQL commits/s, persistent messages/s through one RabbitMQ quorum queue),
// then starts the four services on fresh databases and a fresh RabbitMQ virtual host and runs
// the scenarios: a closed loop over many products, a closed loop on one hot product with finite
// stock (checked against the orders afterwards), and open loops at fixed rates and at shares of the closed loop's. It follows
// every order to its final status and prints, per scenario, throughput and latency, the mean
// batch size per queue and the CPU each process group spent per order. Everything it creates
// is removed on exit, Ctrl-C included.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// Scenario kinds, as -scenarios names them.
var kinds = []string{"spread", "hot", "open"}

type config struct {
	duration  time.Duration
	drain     time.Duration
	baseline  time.Duration
	inFlight  int
	products  int
	rates     []rate
	scenarios []string
	hotStock  int64
	conns     int
	replicas  int
	logLevel  string
	dbParams  string
	keep      bool
	markdown  bool
	// seedOrders, when positive, fills order-service's database with that many orders of the
	// past year before the scenarios, heavyOrders of them one customer's; postgresURL is the
	// server the stack's databases go on (a scratch one with production settings).
	seedOrders, heavyOrders int
	postgresURL             string
	// tracing: each setting runs the scenarios on a stack of its own; none, the default, runs
	// them once with tracing off and no receiver.
	tracing []tracing
}

func defaultConfig() config {
	return config{
		duration:  20 * time.Second,
		drain:     60 * time.Second,
		baseline:  5 * time.Second,
		inFlight:  128,
		products:  50,
		rates:     []rate{{fixed: 20}, {ofClosed: 1.0 / 3, text: "1/3"}, {ofClosed: 2.0 / 3, text: "2/3"}, {fixed: 200}},
		scenarios: kinds,
		conns:     4,
		replicas:  1,
		logLevel:  "info",

		heavyOrders: 20_000,
	}
}

func main() {
	cfg := defaultConfig()
	flag.DurationVar(&cfg.duration, "duration", cfg.duration, "length of each scenario's load")
	flag.DurationVar(&cfg.drain, "drain", cfg.drain, "how long to wait for orders still in flight after a scenario's load")
	flag.DurationVar(&cfg.baseline, "baseline", cfg.baseline, "length of each baseline measurement")
	flag.IntVar(&cfg.inFlight, "in-flight", cfg.inFlight, "orders in flight in the closed-loop scenarios")
	flag.IntVar(&cfg.inFlight, "concurrency", cfg.inFlight, "same as -in-flight")
	flag.IntVar(&cfg.products, "products", cfg.products, "products the spread and open-loop orders are spread over")
	flag.Func("rates", "rates of the open-loop scenarios, comma-separated: orders/s, or a fraction of the closed-loop rate measured in the same run (spread), as 1/3 (default 20,1/3,2/3,200)", func(v string) (err error) {
		cfg.rates, err = parseRates(v)
		return err
	})
	flag.Func("rate", "one open-loop rate in orders/s; same as -rates with one value", func(v string) (err error) {
		cfg.rates, err = parseRates(v)
		return err
	})
	flag.Func("scenarios", "scenarios to run, comma-separated, of spread, hot, open (default all)", func(v string) error {
		cfg.scenarios = nil
		for s := range strings.SplitSeq(v, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(kinds, s) {
				return fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(kinds, ", "))
			}
			cfg.scenarios = append(cfg.scenarios, s)
		}
		return nil
	})
	flag.Int64Var(&cfg.hotStock, "hot-stock", 0, fmt.Sprintf("stock of the hot product; 0: %.0f%% of the orders the spread scenario completed "+
		"(of 1000/s × -duration when it does not run), so that some orders run out of stock", 100*hotShare))
	flag.IntVar(&cfg.conns, "conns", cfg.conns, "gRPC connections to order-service, spread over its replicas")
	flag.IntVar(&cfg.replicas, "replicas", cfg.replicas, "processes per service")
	flag.StringVar(&cfg.logLevel, "log-level", cfg.logLevel, "LOG_LEVEL of the services")
	flag.StringVar(&cfg.dbParams, "db-params", "", `query parameters added to the services' database URLs, e.g. "pool_max_conns=16"`)
	flag.BoolVar(&cfg.keep, "keep", false, "keep the services' logs")
	flag.IntVar(&cfg.seedOrders, "seed-orders", 0, "orders of the past year to fill order-service's database with before the scenarios (0: none)")
	flag.IntVar(&cfg.heavyOrders, "heavy-customer-orders", cfg.heavyOrders, "of the seeded orders, how many belong to one customer, whose pages ListOrders is timed on")
	flag.StringVar(&cfg.postgresURL, "postgres-url", "", "PostgreSQL server for the stack's databases (default: the machine's); a scratch server with production settings for -seed-orders")
	flag.BoolVar(&cfg.markdown, "markdown", false, "print the report as Markdown tables")
	flag.Func("tracing", "run the scenarios once per tracing setting, comma-separated: off, or a sampling ratio "+
		"(parentbased_traceidratio), exporting to a receiver the benchmark serves and discards; e.g. off,1,0.01", func(v string) (err error) {
		cfg.tracing, err = parseTracing(v)
		return err
	})
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		rep.command = command(os.Args[1:])
		rep.write(os.Stdout, cfg.markdown)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// rate is an open loop's rate: fixed orders/s, or a share of the closed-loop rate the spread
// scenario measured in the same run, so that a figure means the same on a fast and a slow day.
type rate struct {
	fixed    float64
	ofClosed float64
	text     string // as given, for a share
}

// of returns the rate in orders/s; closed is the spread scenario's, 0 when it did not run.
func (r rate) of(closed float64) (float64, error) {
	if r.ofClosed == 0 {
		return r.fixed, nil
	}
	if closed <= 0 {
		return 0, fmt.Errorf("rate %s of the closed loop needs the spread scenario", r.text)
	}
	return r.ofClosed * closed, nil
}

func parseRates(v string) ([]rate, error) {
	var rates []rate
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if num, den, ok := strings.Cut(s, "/"); ok {
			n, err1 := strconv.ParseFloat(num, 64)
			d, err2 := strconv.ParseFloat(den, 64)
			if err1 != nil || err2 != nil || n <= 0 || d <= 0 {
				return nil, fmt.Errorf("bad rate %q", s)
			}
			rates = append(rates, rate{ofClosed: n / d, text: s})
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("bad rate %q", s)
		}
		rates = append(rates, rate{fixed: r})
	}
	return rates, nil
}

// command is how to repeat this run, shell-quoted.
func command(args []string) string {
	parts := []string{"go run ./cmd/bench"}
	for _, a := range args {
		if strings.ContainsAny(a, " \t\"'$`\\*?&|;<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// errHotCheck is returned, with the report, when the hot product's stock disagrees with its
// orders.
var errHotCheck = errors.New("hot product check failed")

// run measures the baselines, starts the stack and runs the scenarios, writing progress to
// progress. It returns the report of what it measured even with errHotCheck.
func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	rep := &report{cores: runtime.NumCPU(), clock: clockTicks(), replicas: max(cfg.replicas, 1),
		baseline: cfg.baseline, duration: cfg.duration, drain: cfg.drain}
	var err error
	fmt.Fprintf(progress, "baseline: PostgreSQL commits (%d connections, %s)...\n", baselineConns, cfg.baseline)
	if rep.pgCommits, err = postgresBaseline(ctx, cfg.baseline); err != nil {
		return nil, fmt.Errorf("postgres baseline: %w", err)
	}
	fmt.Fprintf(progress, "baseline: RabbitMQ quorum queue pipe (%s)...\n", cfg.baseline)
	if rep.brokerMsgs, err = brokerBaseline(ctx, cfg.baseline); err != nil {
		return nil, fmt.Errorf("broker baseline: %w", err)
	}

	fmt.Fprintf(progress, "floors: one commit and one broker hop at a time (%d each)...\n", floorSamples)
	if rep.floor, err = measureFloors(ctx); err != nil {
		return nil, fmt.Errorf("floors: %w", err)
	}

	logDir, err := os.MkdirTemp("", "ordersaga-bench-")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		fmt.Fprintf(progress, "service logs in %s\n", logDir)
	} else {
		defer os.RemoveAll(logDir)
	}

	defer stack.RemoveBinaries()
	settings := cfg.tracing
	if len(settings) == 0 {
		settings = []tracing{{}}
	}
	for _, tr := range settings {
		if err := rep.runStack(ctx, cfg, tr, logDir, progress); err != nil {
			return nil, err
		}
	}
	for _, r := range rep.results {
		if r.hot != nil && !r.hot.ok() {
			return rep, fmt.Errorf("%w: %s", errHotCheck, r.hot)
		}
	}
	return rep, nil
}

// runStack starts a stack with tracing set as tr and runs the scenarios on it, adding their
// results to rep. With -tracing, each result's name says the setting, and the spans exported.
func (rep *report) runStack(ctx context.Context, cfg config, tr tracing, logDir string, progress io.Writer) error {
	env := map[string]string{"LOG_LEVEL": cfg.logLevel}
	var sink *spanSink
	if tr.on {
		var addr string
		var stopSink func()
		var err error
		if sink, addr, stopSink, err = serveSink(); err != nil {
			return err
		}
		defer stopSink()
		for k, v := range tr.env(addr) {
			env[k] = v
		}
	}
	if len(cfg.tracing) > 0 {
		fmt.Fprintf(progress, "starting the stack, %s...\n", tr)
	} else {
		fmt.Fprintln(progress, "starting the stack...")
	}
	s, teardown, err := stack.StartWith(ctx, stack.Options{
		Replicas:       rep.replicas,
		Env:            env,
		DatabaseParams: cfg.dbParams,
		PostgresURL:    cfg.postgresURL,
	}, logDir)
	if err != nil {
		return err
	}
	defer teardown()
	if cfg.seedOrders > 0 {
		heavy := uuid.NewString()
		fmt.Fprintf(progress, "seeding %d orders (%d of one customer)...\n", cfg.seedOrders, cfg.heavyOrders)
		began := time.Now()
		if err := seed(ctx, s.DatabaseURLs["order"], cfg.seedOrders, heavy, cfg.heavyOrders); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		fmt.Fprintf(progress, "seeded in %s\n", time.Since(began).Round(time.Second))
		if rep.reads, err = probeReads(ctx, s.OrderClient(), heavy, 1000); err != nil {
			return err
		}
		rep.seeded, rep.heavy = cfg.seedOrders, cfg.heavyOrders
	}

	rn := &runner{stack: s, cfg: cfg, hz: rep.clock.hz}
	for i := range max(cfg.conns, s.Replicas()) {
		// Separate connections so that one HTTP/2 connection's writer is not what is measured,
		// over every replica of order-service as a load balancer would spread them.
		cc, err := grpc.NewClient(s.Addr("order", i%s.Replicas(), "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		rn.clients = append(rn.clients, orderv1.NewOrderServiceClient(cc))
	}

	var spread *result
	for _, sc := range cfg.plan() {
		hotStock := cfg.hotStock
		if sc.kind == "hot" {
			if hotStock <= 0 {
				hotStock = int64(hotShare * 1000 * cfg.duration.Seconds())
				if spread != nil {
					hotStock = int64(hotShare * float64(spread.completed))
				}
				hotStock = max(hotStock, 1)
			}
		}
		if sc.kind == "open" {
			var closed float64
			if spread != nil {
				closed = spread.rate()
			}
			r, err := sc.open.of(closed)
			if err != nil {
				return err
			}
			sc.rate = r
			sc.name = fmt.Sprintf("open %.0f/s", r)
			if sc.open.ofClosed > 0 {
				sc.name = fmt.Sprintf("open %s of closed: %.0f/s", sc.open.text, r)
			}
		}
		if len(cfg.tracing) > 0 {
			sc.name += ", " + tr.String()
		}
		fmt.Fprintf(progress, "%s for %s...\n", sc.name, cfg.duration)
		var spansBefore int64
		if sink != nil {
			spansBefore = sink.spans.Load()
		}
		r, err := rn.run(ctx, sc, hotStock)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		if sink != nil {
			fmt.Fprintf(progress, "%s: %d spans received so far (the services export every 5 s by default)\n", sc.name, sink.spans.Load()-spansBefore)
		}
		rep.results = append(rep.results, r)
		if sc.kind == "spread" {
			spread = r
		}
	}
	return nil
}

// plan lists the scenarios to run, always spread, hot, open: the hot product's default stock
// derives from what the spread scenario completed.
func (cfg config) plan() []scenario {
	var plan []scenario
	has := func(k string) bool { return slices.Contains(cfg.scenarios, k) }
	if has("spread") {
		plan = append(plan, scenario{name: fmt.Sprintf("closed %d, %d products", cfg.inFlight, cfg.products),
			kind: "spread", inFlight: cfg.inFlight, products: cfg.products})
	}
	if has("hot") {
		plan = append(plan, scenario{name: fmt.Sprintf("closed %d, 1 hot product", cfg.inFlight),
			kind: "hot", inFlight: cfg.inFlight, products: 1})
	}
	if has("open") {
		for _, r := range cfg.rates {
			plan = append(plan, scenario{kind: "open", open: r, products: cfg.products, confirmedOnly: true})
		}
	}
	return plan
}
