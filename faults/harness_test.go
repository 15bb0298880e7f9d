//go:build faults || cluster

package faults

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/ops"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/broker"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// Bounds of a scenario.
const (
	quiescenceTimeout = 3 * time.Minute  // every accepted order is terminal within this
	placeTimeout      = 45 * time.Second // CreateOrder is retried this long before the order is skipped
	callTimeout       = 5 * time.Second  // one RPC
	minAccepted       = 300              // a stream must have this many orders accepted
	scarceStock       = 20               // units of the scarce product
)

// kind is what an order of the stream is made to test; its expected outcome follows from it.
type kind int

const (
	kindHappy      kind = iota // credit_card, ample stock, DE: CONFIRMED
	kindMulti                  // debit_card, two products, DE: CONFIRMED
	kindDeclined               // declined_card: PAYMENT_FAILED
	kindScarce                 // the scarce product: CONFIRMED while its stock lasts, then CANCELLED
	kindAntarctica             // AQ: the carrier refuses, stock released, payment reversed: CANCELLED
)

// mix is the stream's cycle of order kinds: half happy, the rest spread over every failure.
var mix = []kind{
	kindHappy, kindDeclined, kindHappy, kindScarce, kindHappy, kindAntarctica, kindHappy, kindMulti, kindHappy, kindDeclined,
	kindHappy, kindScarce, kindHappy, kindMulti, kindHappy, kindAntarctica, kindHappy, kindScarce, kindHappy, kindDeclined,
}

// env is a running stack with clients of every order-service replica and the products the
// stream orders.
type env struct {
	t      *testing.T
	stack  *stack.Stack
	orders []orderv1.OrderServiceClient // one per order-service replica
	run    string                       // prefix of this run's request ids

	plenty, other, scarce string // product ids

	connOnce sync.Once
	conn     *broker.Conn
	connErr  error

	tx      *txWatch // transactions of the stack's databases open longer than openTxBound
	missing int      // accepted orders not listed, at the last look for quiescence
	pending int      // listed orders not terminal, at the last look

	failedCalls atomic.Int64 // CreateOrder calls that failed

	// expired, when set, says which orders may end CANCELLED by their saga deadline instead
	// of their kind's outcome: those a fault could cost an event (see TestFaultTopologyDeleted).
	expired  func(*orderv1.Order) bool
	deadline int // orders checkOutcomes accepted as cancelled by their deadline
}

// start runs a stack for the test and creates the stream's products.
func start(t *testing.T, opts stack.Options) *env {
	t.Helper()
	began := time.Now()
	s := stack.Start(t, opts)
	e := &env{t: t, stack: s, run: uuid.NewString()[:8]}
	for r := range s.Replicas() {
		cc, err := grpc.NewClient(s.Addr("order", r, "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("order client: %v", err)
		}
		t.Cleanup(func() { cc.Close() })
		e.orders = append(e.orders, orderv1.NewOrderServiceClient(cc))
	}
	e.plenty = e.product(1_000_000)
	e.other = e.product(1_000_000)
	e.scarce = e.product(scarceStock)
	e.tx = e.watchTransactions()
	t.Cleanup(func() {
		if e.conn != nil {
			e.conn.Close()
		}
	})
	t.Logf("stack with %d replica(s) per service ready in %s", s.Replicas(), time.Since(began).Round(time.Millisecond))
	return e
}

func (e *env) product(quantity int64) string {
	e.t.Helper()
	id := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := e.stack.InventoryClient().SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: id, Quantity: quantity}); err != nil {
		e.t.Fatalf("SetStock: %v", err)
	}
	return id
}

// broker returns a connection to the stack's virtual host, opened on first use; it redials by
// itself after a broker restart.
func (e *env) broker() *broker.Conn {
	e.t.Helper()
	e.connOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.conn, e.connErr = broker.Dial(ctx, e.stack.AMQPURL, slog.New(slog.DiscardHandler))
	})
	if e.connErr != nil {
		e.t.Fatalf("connect to broker: %v", e.connErr)
	}
	return e.conn
}

// request returns the i-th order of the stream. Its request id makes retries safe: a CreateOrder
// that committed but whose answer was lost returns the same order the second time.
func (e *env) request(i int) *orderv1.CreateOrderRequest {
	req := &orderv1.CreateOrderRequest{
		CustomerId:      uuid.NewString(),
		PaymentMethod:   "credit_card",
		Items:           []*orderv1.LineItem{{ProductId: e.plenty, Quantity: 1, UnitPrice: "19.90"}},
		ShippingAddress: &orderv1.ShippingAddress{Recipient: "Ada", Line1: "Main St 1", City: "Berlin", PostalCode: "10115", CountryCode: "DE"},
		RequestId:       fmt.Sprintf("faults-%s-%d", e.run, i),
	}
	switch mix[i%len(mix)] {
	case kindMulti:
		req.PaymentMethod = "debit_card"
		req.Items = append(req.Items, &orderv1.LineItem{ProductId: e.other, Quantity: 2, UnitPrice: "5.25"})
	case kindDeclined:
		req.PaymentMethod = "declined_card"
	case kindScarce:
		req.Items[0].ProductId = e.scarce
	case kindAntarctica:
		req.ShippingAddress.CountryCode = "AQ"
	}
	return req
}

// classify tells an order's kind from the order itself, so that orders whose CreateOrder answer
// was lost are judged too.
func (e *env) classify(o *orderv1.Order) kind {
	switch {
	case o.GetPaymentMethod() == "declined_card":
		return kindDeclined
	case o.GetShippingAddress().GetCountryCode() == "AQ":
		return kindAntarctica
	case slices.ContainsFunc(o.GetItems(), func(it *orderv1.LineItem) bool { return it.GetProductId() == e.scarce }):
		return kindScarce
	case len(o.GetItems()) > 1:
		return kindMulti
	}
	return kindHappy
}

// streamOptions shape a stream of orders.
type streamOptions struct {
	Orders   int           // default 360
	Workers  int           // concurrent clients, default 4
	Duration time.Duration // the orders are spread evenly over it, default 15s
	FaultAt  time.Duration // when the fault starts, default a quarter of Duration
	// CallTimeout bounds one CreateOrder call, default callTimeout.
	CallTimeout time.Duration
	// RecoverWithin, when set, places a probe order once the fault function returns and fails
	// the test unless it is terminal within this bound: new orders complete again.
	RecoverWithin time.Duration
}

// streamResult is what a stream placed.
type streamResult struct {
	Accepted map[string]bool // ids of the orders CreateOrder returned
	Skipped  int             // orders given up on after placeTimeout
	Retried  int             // orders placed only after a failed CreateOrder
	Slowest  time.Duration   // the longest it took to place one order, retries included
	Elapsed  time.Duration
	FaultEnd time.Time     // when the fault function returned
	Recover  time.Duration // from FaultEnd until the probe order was terminal (RecoverWithin)
}

// stream places orders at a steady pace from a few goroutines and runs fault alongside, from
// FaultAt on; it returns once both are done. An order whose CreateOrder fails is retried with
// the same request id, on the next order-service replica, for up to placeTimeout.
func (e *env) stream(opts streamOptions, fault func(ctx context.Context)) streamResult {
	e.t.Helper()
	if opts.Orders == 0 {
		opts.Orders = 360
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.Duration == 0 {
		opts.Duration = 15 * time.Second
	}
	if opts.FaultAt == 0 {
		opts.FaultAt = opts.Duration / 4
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = callTimeout
	}
	ctx := e.t.Context()
	res := streamResult{Accepted: map[string]bool{}}
	var mu sync.Mutex
	began := time.Now()
	var wg sync.WaitGroup
	if fault != nil {
		wg.Go(func() {
			select {
			case <-time.After(opts.FaultAt):
				fault(ctx)
				end := time.Now()
				mu.Lock()
				res.FaultEnd = end
				mu.Unlock()
				if opts.RecoverWithin > 0 {
					id, took := e.probe(ctx, opts.CallTimeout, opts.RecoverWithin)
					mu.Lock()
					res.Recover = took
					if id != "" {
						res.Accepted[id] = true
					}
					mu.Unlock()
				}
			case <-ctx.Done():
			}
		})
	}
	for w := range opts.Workers {
		wg.Go(func() {
			for i := w; i < opts.Orders; i += opts.Workers {
				at := began.Add(opts.Duration * time.Duration(i) / time.Duration(opts.Orders))
				select {
				case <-time.After(time.Until(at)):
				case <-ctx.Done():
					return
				}
				placed := time.Now()
				id, attempts := e.place(ctx, e.request(i), i, opts.CallTimeout)
				mu.Lock()
				if id != "" {
					res.Accepted[id] = true
				} else {
					res.Skipped++
				}
				if attempts > 1 {
					res.Retried++
				}
				res.Slowest = max(res.Slowest, time.Since(placed))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(began)
	e.t.Logf("stream: %d orders accepted (%d after a retry, slowest in %s), %d skipped, in %s", len(res.Accepted), res.Retried,
		res.Slowest.Round(time.Millisecond), res.Skipped, res.Elapsed.Round(time.Millisecond))
	if len(res.Accepted) < minAccepted {
		e.t.Fatalf("only %d orders accepted, want at least %d", len(res.Accepted), minAccepted)
	}
	return res
}

// place creates an order (the i-th of the stream) and returns its id ("" when given up on) and
// the number of CreateOrder calls it took.
func (e *env) place(ctx context.Context, req *orderv1.CreateOrderRequest, i int, timeout time.Duration) (string, int) {
	deadline := time.Now().Add(placeTimeout)
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := e.orders[(i+attempt)%len(e.orders)].CreateOrder(cctx, req)
		cancel()
		if err == nil {
			return resp.GetOrder().GetOrderId(), attempt
		}
		if status.Code(err) == codes.InvalidArgument {
			e.t.Errorf("CreateOrder %d: %v", i, err) // the request is wrong: a bug of this test
			return "", attempt
		}
		if e.failedCalls.Add(1) <= 5 {
			e.t.Logf("CreateOrder %d attempt %d failed: %v", i, attempt, err) // the first few, to tell why
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.t.Logf("CreateOrder %d given up: %v", i, err)
			return "", attempt
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var terminal = map[orderv1.OrderStatus]bool{
	orderv1.OrderStatus_ORDER_STATUS_CONFIRMED:      true,
	orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED: true,
	orderv1.OrderStatus_ORDER_STATUS_CANCELLED:      true,
}

// listOrders pages through every order with ListOrders.
func (e *env) listOrders(ctx context.Context) ([]*orderv1.Order, error) {
	var all []*orderv1.Order
	token := ""
	for page := 0; ; page++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := e.orders[page%len(e.orders)].ListOrders(cctx, &orderv1.ListOrdersRequest{PageSize: 100, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetOrders()...)
		if token = resp.GetNextPageToken(); token == "" {
			return all, nil
		}
	}
}

// queueDepths returns how many messages wait in every queue of the topology, dead-letter
// queues included.
func (e *env) queueDepths(ctx context.Context) (map[string]int, error) {
	ch, err := e.broker().Channel(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	depths := map[string]int{}
	for _, s := range catalog.Subscriptions() {
		for _, name := range []string{s.Queue(), s.DeadLetterQueue()} {
			q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", name, err)
			}
			depths[name] = q.Messages
		}
	}
	return depths, nil
}

// waitQuiescent waits until every order (the accepted ones at least) is terminal and no event
// waits in a queue, and returns the orders.
func (e *env) waitQuiescent(accepted map[string]bool) []*orderv1.Order {
	e.t.Helper()
	ctx := e.t.Context()
	began := time.Now()
	last := "nothing listed yet"
	for {
		if orders, err := e.listOrders(ctx); err != nil {
			last = "ListOrders: " + err.Error()
		} else if why := e.busy(ctx, orders, accepted); why != "" {
			last = why
		} else {
			e.t.Logf("quiescent within %s: %d orders", time.Since(began).Round(time.Millisecond), len(orders))
			return orders
		}
		if time.Since(began) > quiescenceTimeout {
			e.t.Fatalf("not quiescent within %s: %s", quiescenceTimeout, last)
		}
		time.Sleep(time.Second)
	}
}

// busy says why the system is not quiescent yet, or returns "".
func (e *env) busy(ctx context.Context, orders []*orderv1.Order, accepted map[string]bool) string {
	listed := map[string]bool{}
	byStatus := map[string]int{}
	var pending []string
	for _, o := range orders {
		listed[o.GetOrderId()] = true
		if !terminal[o.GetStatus()] {
			byStatus[o.GetStatus().String()]++
			pending = append(pending, o.GetOrderId())
		}
	}
	missing := 0
	for id := range accepted {
		if !listed[id] {
			missing++
		}
	}
	e.missing, e.pending = missing, len(pending)
	if len(pending) > 0 || missing > 0 {
		return fmt.Sprintf("%d accepted orders not listed; %d not terminal %v, e.g. %v", missing, len(pending), byStatus, pending[:min(len(pending), 5)])
	}
	depths, err := e.queueDepths(ctx)
	if err != nil {
		return "queue depths: " + err.Error()
	}
	for q, n := range depths {
		if n > 0 && !strings.HasSuffix(q, ".dlq") {
			return fmt.Sprintf("%d message(s) wait in %s", n, q)
		}
	}
	return ""
}

// checkOutcomes checks that every order ended as its kind says.
func (e *env) checkOutcomes(orders []*orderv1.Order) {
	e.t.Helper()
	byStatus := map[string]int{}
	scarce, scarceConfirmed, wrong := 0, 0, 0
	expect := func(o *orderv1.Order, want ...orderv1.OrderStatus) {
		if slices.Contains(want, o.GetStatus()) {
			return
		}
		if e.expired != nil && e.expired(o) && o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CANCELLED &&
			strings.Contains(o.GetFailureReason(), "saga deadline passed") {
			e.deadline++
			return
		}
		if wrong++; wrong <= 10 {
			e.t.Errorf("order %s (%s, %s): %s (%q), want %v", o.GetOrderId(), o.GetPaymentMethod(),
				o.GetShippingAddress().GetCountryCode(), o.GetStatus(), o.GetFailureReason(), want)
		}
	}
	for _, o := range orders {
		byStatus[strings.TrimPrefix(o.GetStatus().String(), "ORDER_STATUS_")]++
		switch e.classify(o) {
		case kindDeclined:
			expect(o, orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED)
		case kindAntarctica:
			expect(o, orderv1.OrderStatus_ORDER_STATUS_CANCELLED)
		case kindScarce:
			scarce++
			if o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
				scarceConfirmed++
			}
			expect(o, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, orderv1.OrderStatus_ORDER_STATUS_CANCELLED)
		default:
			expect(o, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED)
		}
		switch o.GetStatus() {
		case orderv1.OrderStatus_ORDER_STATUS_CONFIRMED:
			if o.GetTrackingCode() == "" {
				e.t.Errorf("order %s is confirmed without a tracking code", o.GetOrderId())
			}
		case orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED, orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
			if o.GetFailureReason() == "" {
				e.t.Errorf("order %s is %s without a failure reason", o.GetOrderId(), o.GetStatus())
			}
		}
	}
	if wrong > 10 {
		e.t.Errorf("... %d orders with the wrong outcome in all", wrong)
	}
	// Scarce orders never release stock (they ship to DE), so exactly the stock is sold.
	if want := min(scarce, scarceStock); scarceConfirmed != want {
		e.t.Errorf("%d of %d scarce orders confirmed, want %d", scarceConfirmed, scarce, want)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), callTimeout)
	defer cancel()
	if st, err := e.stack.InventoryClient().GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: e.scarce}); err != nil {
		e.t.Errorf("GetStock: %v", err)
	} else if st.GetStock().GetReserved() != int64(scarceConfirmed) {
		e.t.Errorf("scarce product: %d reserved, %d confirmed orders", st.GetStock().GetReserved(), scarceConfirmed)
	}
	e.t.Logf("outcomes: %v", byStatus)
}

// pools opens a pool on each service's database; they are closed when the test ends.
func (e *env) pools() map[string]*pgxpool.Pool {
	e.t.Helper()
	pools := map[string]*pgxpool.Pool{}
	for svc, url := range e.stack.DatabaseURLs {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			e.t.Fatalf("open %s database: %v", svc, err)
		}
		e.t.Cleanup(pool.Close)
		pools[svc] = pool
	}
	return pools
}

// audit runs the operator's audit over the four databases and the dead-letter queues, which
// must hold exactly deadLetters messages. It returns the dead letters found and the audit's
// duplicate-effect violations.
func (e *env) audit(deadLetters int) (dlq, duplicates int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	p := e.pools()
	vs, err := ops.Audit(ctx, ops.Databases{Order: p["order"], Payment: p["payment"], Inventory: p["inventory"], Shipping: p["shipping"]}, time.Time{})
	if err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	for _, v := range vs {
		if strings.HasPrefix(v.Rule, "duplicate-") {
			duplicates++
		}
	}
	depths, err := ops.DeadLetterQueues(ctx, e.broker())
	if err != nil {
		e.t.Fatalf("dead-letter queues: %v", err)
	}
	vs = append(vs, ops.CheckDeadLetters(depths, deadLetters)...)
	total := 0
	for _, q := range depths {
		total += q.Depth
	}
	if total != deadLetters {
		e.t.Errorf("%d dead letters, want %d: %+v", total, deadLetters, depths)
	}
	for i, v := range vs {
		if i == 30 {
			e.t.Errorf("... %d violations in all", len(vs))
			break
		}
		e.t.Errorf("audit: %s %s: %s", v.OrderID, v.Rule, v.Detail)
	}
	return total, duplicates
}

// verify waits for quiescence after a stream, then checks outcomes, the audit, that every
// outbox drains to empty and that no transaction stayed open longer than openTxBound. It logs
// the fault's FAULT line (report) whatever the outcome.
func (e *env) verify(res streamResult, deadLetters int) []*orderv1.Order {
	e.t.Helper()
	r := report{orders: len(res.Accepted), dlq: -1, outbox: -1, recover: res.Recover}
	defer e.report(&r) // also when a check below ends the test
	orders := e.waitQuiescent(res.Accepted)
	if r.recover == 0 && !res.FaultEnd.IsZero() {
		r.recover = time.Since(res.FaultEnd)
	}
	e.checkOutcomes(orders)
	r.dlq, r.duplicates = e.audit(deadLetters)
	r.outbox = e.drainOutboxes()
	r.openTx = e.checkTransactions()
	return orders
}

// metric sums the samples of a counter over every replica of svc whose labels contain all of
// labels (each `name="value"`).
func (e *env) metric(ctx context.Context, svc, name string, labels ...string) (float64, error) {
	sum := 0.0
	for r := range e.stack.Replicas() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.stack.OpsAddr(svc, r)+"/metrics", nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, name+"{") {
				continue
			}
			ls, value, ok := strings.Cut(line, "} ")
			if !ok || slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(ls, l) }) {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				resp.Body.Close()
				return 0, fmt.Errorf("metric line %q: %w", line, err)
			}
			sum += v
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			return 0, err
		}
	}
	return sum, nil
}

// ordersctl runs the operator tool against the stack and returns its output and exit status.
func (e *env) ordersctl(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ordersctlBin(e.t), args...)
	cmd.Env = append(os.Environ(),
		"AMQP_URL="+e.stack.AMQPURL,
		"ORDER_DATABASE_URL="+e.stack.DatabaseURLs["order"],
		"PAYMENT_DATABASE_URL="+e.stack.DatabaseURLs["payment"],
		"INVENTORY_DATABASE_URL="+e.stack.DatabaseURLs["inventory"],
		"SHIPPING_DATABASE_URL="+e.stack.DatabaseURLs["shipping"],
	)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		e.t.Fatalf("ordersctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

var (
	ordersctlOnce sync.Once
	ordersctlPath string
	ordersctlErr  error
)

// ordersctlBin returns the built ordersctl: $ORDERSAGA_BIN_DIR/ordersctl (make builds it), else
// one built into a temporary directory.
func ordersctlBin(t *testing.T) string {
	t.Helper()
	ordersctlOnce.Do(func() {
		if dir := os.Getenv("ORDERSAGA_BIN_DIR"); dir != "" {
			ordersctlPath = filepath.Join(dir, "ordersctl")
			_, ordersctlErr = os.Stat(ordersctlPath)
			return
		}
		dir, err := os.MkdirTemp("", "ordersaga-faults-")
		if err != nil {
			ordersctlErr = err
			return
		}
		ordersctlPath = filepath.Join(dir, "ordersctl")
		if out, err := exec.Command("go", "build", "-o", ordersctlPath, "github.com/ordersaga/ordersaga/cmd/ordersctl").CombinedOutput(); err != nil {
			ordersctlErr = fmt.Errorf("go build ordersctl: %w\n%s", err, out)
		}
	})
	if ordersctlErr != nil {
		t.Fatalf("ordersctl: %v", ordersctlErr)
	}
	return ordersctlPath
}

// capture copies every event published on the saga's four exchanges, from now on, into a queue
// of its own, so that a test can publish one again exactly as it was.
type capture struct {
	mu     sync.Mutex
	events map[string][]amqp.Delivery // by routing key
}

func (e *env) capture() *capture {
	e.t.Helper()
	conn, err := amqp.Dial(e.stack.AMQPURL)
	if err != nil {
		e.t.Fatalf("capture: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		e.t.Fatalf("capture: %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		e.t.Fatalf("capture: %v", err)
	}
	for _, ex := range catalog.Exchanges() {
		if err := ch.QueueBind(q.Name, "#", ex, false, nil); err != nil {
			e.t.Fatalf("capture: bind %s: %v", ex, err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		e.t.Fatalf("capture: %v", err)
	}
	c := &capture{events: map[string][]amqp.Delivery{}}
	go func() {
		for d := range deliveries {
			c.mu.Lock()
			c.events[d.RoutingKey] = append(c.events[d.RoutingKey], d)
			c.mu.Unlock()
		}
	}()
	return c
}

// of returns the events captured so far with routing key rk.
func (c *capture) of(rk string) []amqp.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events[rk])
}

// publisher publishes raw messages on the stack's virtual host with confirms.
type publisher struct {
	ch *amqp.Channel
}

func (e *env) publisher() *publisher {
	e.t.Helper()
	conn, err := amqp.Dial(e.stack.AMQPURL)
	if err != nil {
		e.t.Fatalf("publisher: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		e.t.Fatalf("publisher: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		e.t.Fatalf("publisher: %v", err)
	}
	return &publisher{ch: ch}
}

// publish sends msg and waits for the broker's confirm.
func (p *publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("publish %s %s: %w", exchange, key, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm %s %s: %w", exchange, key, err)
	}
	if !ok {
		return fmt.Errorf("broker nacked %s %s", exchange, key)
	}
	return nil
}

// again returns a delivery's message as it was published: body and every property.
func again(d amqp.Delivery) amqp.Publishing {
	return amqp.Publishing{
		Headers: d.Headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, UserId: d.UserId, AppId: d.AppId, Body: d.Body,
	}
}

// rabbitmqctl runs rabbitmqctl, retrying: the CLI fails now and then when another one runs at
// the same time ("Distribution failed").
func rabbitmqctl(args ...string) error {
	var err error
	var out []byte
	for try := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err = exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
	}
	return fmt.Errorf("rabbitmqctl %s: %w\n%s", strings.Join(args, " "), err, out)
}

// pause waits d, or less when ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// waitPort waits until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not reachable within %s: %w", addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// snapshot reads counts and sums from every database that any second effect of an event would
// change: rows, statuses, reserved stock, inbox entries.
func (e *env) snapshot(ctx context.Context) map[string]string {
	e.t.Helper()
	queries := map[string][]string{
		"order": {
			`SELECT count(*)::text FROM orders`,
			`SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) n FROM orders GROUP BY status) s`,
			`SELECT max(updated_at)::text FROM orders`,
			`SELECT count(*)::text FROM order_status_history`,
			`SELECT count(*)::text FROM idempotency_keys`,
		},
		"payment": {
			`SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) n FROM payments GROUP BY status) s`,
			`SELECT max(updated_at)::text FROM payments`,
			`SELECT count(*)::text FROM idempotency_keys`,
		},
		"inventory": {
			`SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) n FROM reservations GROUP BY status) s`,
			`SELECT count(*)::text || ' ' || coalesce(sum(quantity), 0)::text FROM reservation_items`,
			`SELECT string_agg(id::text || ' ' || quantity_reserved, ', ' ORDER BY id) FROM products`,
			`SELECT max(updated_at)::text FROM reservations`,
			`SELECT count(*)::text FROM idempotency_keys`,
		},
		"shipping": {
			`SELECT string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) n FROM shipments GROUP BY status) s`,
			`SELECT count(*)::text FROM idempotency_keys`,
		},
	}
	pools := e.pools()
	snap := map[string]string{}
	for _, svc := range slices.Sorted(maps.Keys(queries)) {
		for _, q := range queries[svc] {
			var v *string
			if err := pools[svc].QueryRow(ctx, q).Scan(&v); err != nil {
				e.t.Fatalf("snapshot %s: %s: %v", svc, q, err)
			}
			if v != nil {
				snap[svc+": "+q] = *v
			}
		}
	}
	return snap
}
