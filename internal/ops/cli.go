package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/config"
)

// Exit statuses of ordersctl.
const (
	ExitOK         = 0
	ExitViolations = 1 // audit found broken invariants
	ExitError      = 2 // bad usage, or a command that could not run
)

// usageText is ordersctl's help text, with the defaults of the global flags left to usage.
const usageText = `ordersctl operates a running ordersaga: orders, stock, dead letters and the saga's
invariants.

Usage:
  ordersctl [global flags] <command> [flags]

Commands:
  order <order-id> [-json] [-dlq-max 1000] [-ignore-dlq]
        one order across the saga: the order, its history, payment, reservation
        and shipment, its events still in an outbox (all four databases), its
        dead letters (looking at up to -dlq-max of each dead-letter queue,
        without removing any) and the trace id they carry ("-" when none)
  dlq list [-json]
        every dead-letter queue of the topology with its depth
  dlq inspect <queue.dlq> [-n 10] [-json]
        show up to n dead letters without removing them: ids, decoded event,
        why it died, delivery count
  dlq replay <queue.dlq> (-id <message-id> | -all)
        move dead letters back to the queue they failed on (only that consumer
        gets them again), acking each only once the broker confirmed the copy
  audit [-since 0] [-stock] [-allow-dead-letters 0] [-ignore-dlq] [-json]
        check the saga's invariants across the four databases and that the
        dead-letter queues are empty; one line per violation, exit 1 if any.
        -since 10m (or an RFC 3339 time) checks only orders created since then,
        reading just those and their records in batches, and the records made
        since then for orphans (0: everything). The stock totals span every
        order: with -since they are checked only with -stock.
        Run it on a quiet system: orders in flight show up as violations.
  order get <order-id>
        the order as order-service's GetOrder returns it (JSON), through the
        public gRPC API rather than the databases
  stock get <product-id>
  stock set <product-id> <quantity>
        a product's stock through inventory's admin API (JSON)

A queue may be named with or without its ".dlq" suffix.

Global flags (also accepted after the command; environment variable in brackets):
  -amqp-url URL       [AMQP_URL] default %s
  -order-db URL       [ORDER_DATABASE_URL] default %s
  -payment-db URL     [PAYMENT_DATABASE_URL] default %s
  -inventory-db URL   [INVENTORY_DATABASE_URL] default %s
  -shipping-db URL    [SHIPPING_DATABASE_URL] default %s
  -timeout 1m         give up after this long, connecting included
  -order-addr A       [ORDERSCTL_ORDER_ADDR] default %s
  -inventory-addr A   [ORDERSCTL_INVENTORY_ADDR] default %s
  -tls                [ORDERSCTL_TLS=true] dial the gRPC APIs with TLS (system roots)
  -tls-ca FILE        [ORDERSCTL_TLS_CA_FILE] trust the CA in FILE; implies -tls
  -token JWT          [ORDERSCTL_TOKEN] bearer token for the gRPC APIs

Alone, -config-vars lists the variables ordersctl reads (JSON lines), and -check-config
checks them without connecting.

Exit status: 0 ok, 1 audit found violations, 2 bad usage or error.
`

// Usage is ordersctl's help text.
func Usage() string {
	d, _ := config.Load[Env](func(string) string { return "" }) // the defaults are valid: TestConfigurationDocTable
	return fmt.Sprintf(usageText, d.Broker.AMQPURL, d.Order.URL, d.Payment.URL, d.Inventory.URL, d.Shipping.URL,
		d.OrderAddr, d.InventoryAddr)
}

var errUsage = errors.New("bad usage")

// Run runs ordersctl with args (without the program name) and returns its exit status.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if status, done := config.Inspect[Env](args, getenv, stdout, stderr); done {
		if status != 0 {
			return ExitError
		}
		return ExitOK
	}
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "ordersctl: %v\n", err)
		return ExitError
	}
	root := newFlagSet("ordersctl", stderr)
	cfg.register(root)
	if err := root.Parse(args); err != nil {
		return usageStatus(err, stdout, stderr)
	}
	args = root.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage())
		return ExitError
	}
	cli := &cli{cfg: &cfg, stdout: stdout, stderr: stderr}
	switch cmd := args[0]; {
	case cmd == "dlq" && len(args) > 1 && args[1] == "list":
		err = cli.dlqList(ctx, args[2:])
	case cmd == "dlq" && len(args) > 1 && args[1] == "inspect":
		err = cli.dlqInspect(ctx, args[2:])
	case cmd == "dlq" && len(args) > 1 && args[1] == "replay":
		err = cli.dlqReplay(ctx, args[2:])
	case cmd == "order" && len(args) > 1 && args[1] == "get":
		err = cli.orderGet(ctx, args[2:])
	case cmd == "order":
		err = cli.order(ctx, args[1:])
	case cmd == "audit":
		var found bool
		found, err = cli.audit(ctx, args[1:])
		if err == nil && found {
			return ExitViolations
		}
	case cmd == "stock" && len(args) > 1 && args[1] == "get":
		err = cli.stockGet(ctx, args[2:])
	case cmd == "stock" && len(args) > 1 && args[1] == "set":
		err = cli.stockSet(ctx, args[2:])
	case cmd == "help":
		fmt.Fprint(stdout, Usage())
		return ExitOK
	default:
		fmt.Fprintf(stderr, "ordersctl: unknown command %q\n\n%s", strings.Join(args, " "), Usage())
		return ExitError
	}
	if err != nil {
		return usageStatus(err, stdout, stderr)
	}
	return ExitOK
}

func usageStatus(err error, stdout, stderr io.Writer) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, Usage())
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ordersctl: %v\n\nRun 'ordersctl help' for usage.\n", err)
	default:
		fmt.Fprintf(stderr, "ordersctl: %v\n", err)
	}
	return ExitError
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // Run prints the one usage text
	return fs
}

type cli struct {
	cfg    *Config
	stdout io.Writer
	stderr io.Writer
}

// parse parses a command's flags, which may come before, between or after its positional
// arguments, and checks how many positional arguments there are.
func (c *cli) parse(fs *flag.FlagSet, args []string, positional int, what string) ([]string, error) {
	c.cfg.register(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != positional {
		return nil, fmt.Errorf("%w: %s wants %s", errUsage, fs.Name(), what)
	}
	return pos, nil
}

func (c *cli) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

func (c *cli) dial(ctx context.Context) (*broker.Conn, error) {
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := broker.Dial(ctx, c.cfg.Broker.AMQPURL, log)
	if err != nil {
		return nil, fmt.Errorf("connect to broker %s: %w", redact(c.cfg.Broker.AMQPURL), err)
	}
	return conn, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) dlqList(ctx context.Context, args []string) error {
	fs := newFlagSet("dlq list", c.stderr)
	asJSON := fs.Bool("json", false, "machine-readable output")
	if _, err := c.parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	depths, err := DeadLetterQueues(ctx, conn)
	if err != nil {
		return err
	}
	if *asJSON {
		return c.writeJSON(depths)
	}
	width, total := len("total"), 0
	for _, q := range depths {
		width = max(width, len(q.Queue))
		total += q.Depth
	}
	fmt.Fprintf(c.stdout, "%-*s  %7s\n", width, "DEAD-LETTER QUEUE", "DEPTH")
	for _, q := range depths {
		fmt.Fprintf(c.stdout, "%-*s  %7d\n", width, q.Queue, q.Depth)
	}
	fmt.Fprintf(c.stdout, "%-*s  %7d\n", width, "total", total)
	return nil
}

func (c *cli) dlqInspect(ctx context.Context, args []string) error {
	fs := newFlagSet("dlq inspect", c.stderr)
	n := fs.Int("n", 10, "show at most this many dead letters")
	asJSON := fs.Bool("json", false, "machine-readable output")
	pos, err := c.parse(fs, args, 1, "one dead-letter queue")
	if err != nil {
		return err
	}
	if *n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", errUsage)
	}
	dlq, err := dlqName(pos[0])
	if err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	depth, err := depthOf(ctx, conn, dlq)
	if err != nil {
		return err
	}
	letters, err := Peek(ctx, conn, dlq, *n)
	if err != nil {
		return err
	}
	if *asJSON {
		if letters == nil {
			letters = []DeadLetter{}
		}
		return c.writeJSON(struct {
			Queue       string       `json:"queue"`
			Depth       int          `json:"depth"`
			DeadLetters []DeadLetter `json:"dead_letters"`
		}{dlq, depth, letters})
	}
	fmt.Fprintf(c.stdout, "%s: %d dead letter(s), showing %d\n", dlq, depth, len(letters))
	for i, dl := range letters {
		fmt.Fprintf(c.stdout, "\n[%d]\n", i+1)
		printDeadLetter(c.stdout, dl)
	}
	return nil
}

func printDeadLetter(w io.Writer, dl DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	line("message id", "%s", dl.MessageID)
	line("type", "%s", dl.Type)
	line("order id", "%s", dl.CorrelationID)
	if !dl.Timestamp.IsZero() {
		line("published", "%s", dl.Timestamp.UTC().Format(time.RFC3339))
	}
	if dl.Reason != "" {
		line("reason", "%s", dl.Reason)
		line("failed on", "%s (exchange %q, routing key %q) at %s", dl.FailedOn, dl.Exchange, dl.RoutingKey, dl.FailedAt)
	}
	for _, d := range dl.Deaths {
		line("x-death", "%s x%d on %s (exchange %q, routing keys %s)", d.Reason, d.Count, d.Queue, d.Exchange, strings.Join(d.RoutingKeys, ","))
	}
	if dl.Reason == "" && len(dl.Deaths) == 0 {
		line("reason", "unknown (no dead-letter headers)")
	}
	line("deliveries", "%d", dl.DeliveryCount)
	trace := TraceID(dl.Traceparent)
	if trace == "" {
		trace = "-"
	}
	line("trace id", "%s", trace)
	if dl.Event != nil {
		line("event", "%s", compactJSON(dl.Event))
	} else {
		line("undecodable", "%s", dl.Undecodable)
		more := ""
		if dl.Size > previewBytes {
			more = "..."
		}
		line("payload", "%d bytes: %s%s", dl.Size, dl.Preview, more)
	}
	tw.Flush()
}

// compactJSON removes the whitespace that protojson adds at random, to keep one event on one line.
func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}

func (c *cli) dlqReplay(ctx context.Context, args []string) error {
	fs := newFlagSet("dlq replay", c.stderr)
	id := fs.String("id", "", "replay the dead letter with this message id")
	all := fs.Bool("all", false, "replay every dead letter of the queue")
	pos, err := c.parse(fs, args, 1, "one dead-letter queue")
	if err != nil {
		return err
	}
	if (*id == "") == !*all {
		return fmt.Errorf("%w: dlq replay wants exactly one of -id and -all", errUsage)
	}
	dlq, err := dlqName(pos[0])
	if err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := Replay(ctx, conn, dlq, *id)
	source, _ := SourceQueue(dlq)
	fmt.Fprintf(c.stdout, "replayed %d dead letter(s) from %s to %s\n", n, dlq, source)
	return err
}

func (c *cli) audit(ctx context.Context, args []string) (found bool, err error) {
	fs := newFlagSet("audit", c.stderr)
	var since sinceFlag
	fs.Var(&since, "since", "check only orders created since: a duration ago (10m) or an RFC 3339 time (0: all)")
	allow := fs.Int("allow-dead-letters", 0, "tolerate up to this many dead letters in all")
	ignoreDLQ := fs.Bool("ignore-dlq", false, "do not check the dead-letter queues")
	stock := fs.Bool("stock", false, "with -since, check the stock totals too (sums over every order and reservation)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if _, err := c.parse(fs, args, 0, "no arguments"); err != nil {
		return false, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cutoff := since.cutoff(time.Now())
	dbs, closeAll, err := c.connectDatabases(ctx)
	if err != nil {
		return false, err
	}
	defer closeAll()
	var vs []Violation
	if cutoff.IsZero() {
		vs, err = Audit(ctx, dbs, cutoff)
	} else {
		vs, err = AuditSince(ctx, dbs, cutoff, DefaultAuditBatch, *stock)
	}
	if err != nil {
		return false, err
	}
	tolerated := 0
	if !*ignoreDLQ {
		conn, err := c.dial(ctx)
		if err != nil {
			return false, err
		}
		defer conn.Close()
		depths, err := DeadLetterQueues(ctx, conn)
		if err != nil {
			return false, err
		}
		dl := CheckDeadLetters(depths, *allow)
		if len(dl) == 0 {
			for _, q := range depths {
				tolerated += q.Depth
			}
		}
		vs = append(vs, dl...)
	}
	if *asJSON {
		if vs == nil {
			vs = []Violation{}
		}
		return len(vs) > 0, c.writeJSON(vs)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, v := range vs {
		order := v.OrderID
		if order == "" {
			order = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", order, v.Rule, v.Detail)
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}
	if tolerated > 0 {
		fmt.Fprintf(c.stdout, "%d dead letter(s) tolerated (-allow-dead-letters %d)\n", tolerated, *allow)
	}
	if !cutoff.IsZero() && !*stock {
		fmt.Fprintln(c.stdout, "stock totals not checked: add -stock, or audit without -since")
	}
	if len(vs) == 0 {
		fmt.Fprintln(c.stdout, "no violations")
		return false, nil
	}
	fmt.Fprintf(c.stdout, "%d violation(s)\n", len(vs))
	return true, nil
}

func (c *cli) connectDatabases(ctx context.Context) (Databases, func(), error) {
	var conns []*pgx.Conn
	closeAll := func() {
		for _, conn := range conns {
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	var dbs Databases
	for _, db := range []struct {
		name, url string
		to        *Querier
	}{
		{"order", c.cfg.Order.URL.String(), &dbs.Order},
		{"payment", c.cfg.Payment.URL.String(), &dbs.Payment},
		{"inventory", c.cfg.Inventory.URL.String(), &dbs.Inventory},
		{"shipping", c.cfg.Shipping.URL.String(), &dbs.Shipping},
	} {
		conn, err := pgx.Connect(ctx, db.url)
		if err != nil {
			closeAll()
			return Databases{}, nil, fmt.Errorf("connect to %s database %s: %w", db.name, redact(db.url), err)
		}
		conns = append(conns, conn)
		*db.to = conn
	}
	return dbs, closeAll, nil
}

// dlqName returns the full name of a dead-letter queue given with or without ".dlq".
func dlqName(arg string) (string, error) {
	source, err := SourceQueue(arg)
	if err != nil {
		return "", err
	}
	return source + ".dlq", nil
}

func depthOf(ctx context.Context, conn Channeler, dlq string) (int, error) {
	depths, err := DeadLetterQueues(ctx, conn)
	if err != nil {
		return 0, err
	}
	for _, q := range depths {
		if q.Queue == dlq {
			return q.Depth, nil
		}
	}
	return 0, fmt.Errorf("%s is not a dead-letter queue of the saga", dlq)
}

// sinceFlag is -since: a duration back from now, or an RFC 3339 time; zero means no limit.
type sinceFlag struct {
	ago time.Duration
	at  time.Time
}

func (f *sinceFlag) String() string {
	if !f.at.IsZero() {
		return f.at.Format(time.RFC3339)
	}
	return f.ago.String()
}

func (f *sinceFlag) Set(s string) error {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*f = sinceFlag{at: t}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 10m or an RFC 3339 time such as 2025-01-02T15:04:05Z")
	}
	*f = sinceFlag{ago: d}
	return nil
}

// cutoff returns the earliest creation time to check, or zero for all.
func (f *sinceFlag) cutoff(now time.Time) time.Time {
	switch {
	case !f.at.IsZero():
		return f.at
	case f.ago > 0:
		return now.Add(-f.ago)
	}
	return time.Time{}
}
