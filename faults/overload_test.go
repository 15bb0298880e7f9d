//go:build faults

package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/loadgen"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// Bounds of the overload tests.
const (
	overloadP99      = 2 * time.Second  // CreateOrder answers (or refuses) this fast, 99 in 100
	overloadCall     = 5 * time.Second  // the open loop's caller deadline: a call past it hung
	serviceRSSBound  = 400 << 20        // no service's resident memory under the open loop
	watchersRSSBound = 300 << 20        // order-service's with every watch open
	getOrderBound    = time.Second      // GetOrder while every watch is open
	watchersEndBound = 3 * time.Minute  // every watcher sees its order end once payment runs
	closedLoopFor    = 8 * time.Second  // the closed loop that measures capacity
	openLoopFor      = 20 * time.Second // the open loop at twice that
	closedLoopUsers  = 128              // its concurrent clients, each waiting for its order's end
	openOrders       = 2000             // orders held open, each watched over gRPC
	sseWatchers      = 300              // of those, watched over Server-Sent Events too
)

// TestFaultOverloadOpenLoop measures how many orders a closed loop of clients completes per
// second, then places orders at twice that rate for 20 s whatever the answers (an open loop:
// clients that do not slow down when the system does). CreateOrder must answer or refuse fast
// (p99 under 2 s; a refusal is RESOURCE_EXHAUSTED or UNAVAILABLE, never a hang), every order
// it accepted must end afterwards with its kind's outcome, and no service's memory may pass
// 400 MB meanwhile.
func TestFaultOverloadOpenLoop(t *testing.T) {
	e := start(t, stack.Options{})
	ctx := t.Context()
	mem := e.watchRSS(stack.Services...)
	var next atomic.Int64 // index of the next order of the mix
	accepted := map[string]bool{}
	var mu sync.Mutex

	// Closed loop: each client places an order and waits for its end before the next.
	began := time.Now()
	var done atomic.Int64
	var wg sync.WaitGroup
	for range closedLoopUsers {
		wg.Go(func() {
			for time.Since(began) < closedLoopFor && ctx.Err() == nil {
				i := int(next.Add(1))
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				id, err := e.createAndFollow(cctx, e.orders[i%len(e.orders)], e.request(i))
				cancel()
				if id != "" {
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
				}
				if err != nil {
					t.Errorf("closed loop: %v", err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	capacity := float64(done.Load()) / time.Since(began).Seconds()
	rate := 2 * capacity
	t.Logf("closed loop of %d clients: %d orders ended in %s, %.0f/s; open loop at %.0f/s for %s",
		closedLoopUsers, done.Load(), time.Since(began).Round(time.Millisecond), capacity, rate, openLoopFor)
	if capacity < 10 {
		t.Fatalf("closed-loop capacity %.1f orders/s: the stack is not working", capacity)
	}

	// Open loop.
	var latencies []time.Duration
	codesSeen := map[codes.Code]int{}
	interval := time.Duration(float64(time.Second) / rate)
	openBegan := time.Now()
	for k := 0; ; k++ {
		at := openBegan.Add(time.Duration(k) * interval)
		if at.Sub(openBegan) >= openLoopFor || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(at))
		i := int(next.Add(1))
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, overloadCall)
			defer cancel()
			t0 := time.Now()
			resp, err := e.orders[i%len(e.orders)].CreateOrder(cctx, e.request(i))
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, took)
			codesSeen[status.Code(err)]++
			if err == nil {
				accepted[resp.GetOrder().GetOrderId()] = true
			}
		})
	}
	wg.Wait()
	openEnd := time.Now()
	slices.Sort(latencies)
	p50, p99 := loadgen.Percentile(latencies, 0.50), loadgen.Percentile(latencies, 0.99)
	t.Logf("open loop: %d calls in %s (%.0f/s), CreateOrder p50 %s p99 %s max %s, answers %v",
		len(latencies), openEnd.Sub(openBegan).Round(time.Millisecond), float64(len(latencies))/openEnd.Sub(openBegan).Seconds(),
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), codesSeen)
	if p99 > overloadP99 {
		t.Errorf("CreateOrder p99 %s under twice the capacity, want under %s", p99.Round(time.Millisecond), overloadP99)
	}
	for c, n := range codesSeen {
		if c != codes.OK && c != codes.ResourceExhausted && c != codes.Unavailable {
			t.Errorf("%d CreateOrder calls ended %s, want OK, RESOURCE_EXHAUSTED or UNAVAILABLE", n, c)
		}
	}
	e.verify(streamResult{Accepted: accepted, FaultEnd: openEnd}, 0)
	for svc, peak := range mem.end() {
		t.Logf("%s peak RSS %d MB", svc, peak>>20)
		if peak > serviceRSSBound {
			t.Errorf("%s peak RSS %d MB, want under %d MB", svc, peak>>20, serviceRSSBound>>20)
		}
	}
}

// createAndFollow places an order and follows it over WatchOrder until it is terminal; it
// returns the order's id once accepted.
func (e *env) createAndFollow(ctx context.Context, client orderv1.OrderServiceClient, req *orderv1.CreateOrderRequest) (string, error) {
	resp, err := client.CreateOrder(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	id := resp.GetOrder().GetOrderId()
	if terminal[resp.GetOrder().GetStatus()] {
		return id, nil
	}
	_, err = follow(ctx, client, id, nil)
	return id, err
}

// follow reads a WatchOrder stream of order id until the order is terminal and returns that
// status; first, when set, is called once the first answer came.
func follow(ctx context.Context, client orderv1.OrderServiceClient, id string, first func()) (orderv1.OrderStatus, error) {
	stream, err := client.WatchOrder(ctx, &orderv1.WatchOrderRequest{OrderId: id})
	if err != nil {
		return 0, fmt.Errorf("watch %s: %w", id, err)
	}
	for {
		w, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended before a final status")
			}
			return 0, fmt.Errorf("watch %s: %w", id, err)
		}
		if first != nil {
			first()
			first = nil
		}
		if s := w.GetOrder().GetStatus(); terminal[s] {
			return s, nil
		}
	}
}

// TestFaultOverloadWatchers holds 2,000 orders open (payment-service stopped), each watched by
// a WatchOrder stream, 300 of them by a Server-Sent Events watcher as well: order-service must
// stay under 300 MB and answer GetOrder within a second meanwhile. Once payment runs again,
// every watcher must see its order end.
func TestFaultOverloadWatchers(t *testing.T) {
	e := start(t, stack.Options{})
	ctx := t.Context()
	if err := e.stack.Stop("payment", 0); err != nil {
		t.Fatalf("stop payment: %v", err)
	}
	mem := e.watchRSS("order")

	// Place the orders.
	ids := make([]string, openOrders)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < openOrders; i = int(next.Add(1)) - 1 {
				id, _ := e.place(ctx, e.request(i), i, callTimeout)
				ids[i] = id
			}
		})
	}
	wg.Wait()
	accepted := map[string]bool{}
	for i, id := range ids {
		if id == "" {
			t.Fatalf("order %d not accepted", i)
		}
		accepted[id] = true
	}
	t.Logf("%d orders placed with payment stopped", len(accepted))

	// Watch them: WatchOrder spread over a few connections, SSE over the REST facade.
	var clients []orderv1.OrderServiceClient
	for range 8 {
		cc, err := grpc.NewClient(e.stack.OrderGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		clients = append(clients, orderv1.NewOrderServiceClient(cc))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started, ended, sseEnded atomic.Int64
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	var watchers sync.WaitGroup
	for i, id := range ids {
		watchers.Go(func() {
			if _, err := follow(wctx, clients[i%len(clients)], id, func() { started.Add(1) }); err != nil {
				fail("WatchOrder: %v", err)
				return
			}
			ended.Add(1)
		})
	}
	sse := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sseWatchers}}
	for _, id := range ids[:sseWatchers] {
		watchers.Go(func() {
			if err := watchEvents(wctx, sse, "http://"+e.stack.OrderHTTP+"/v1/orders/"+id+":watch", func() { started.Add(1) }); err != nil {
				fail("SSE watch %s: %v", id, err)
				return
			}
			sseEnded.Add(1)
		})
	}
	for opened := time.Now(); started.Load() < openOrders+sseWatchers; {
		if time.Since(opened) > time.Minute || failures.Load() > 0 {
			t.Fatalf("only %d of %d watchers started", started.Load(), openOrders+sseWatchers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d WatchOrder streams and %d SSE watchers open", openOrders, sseWatchers)

	// Meanwhile order-service answers.
	var slowest time.Duration
	for k := 0; k < 50; k++ {
		t0 := time.Now()
		gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := e.orders[0].GetOrder(gctx, &orderv1.GetOrderRequest{OrderId: ids[k*37%openOrders]})
		gcancel()
		took := time.Since(t0)
		slowest = max(slowest, took)
		if err != nil || took > getOrderBound {
			t.Errorf("GetOrder with every watch open: %s after %s, want an answer within %s", status.Code(err), took.Round(time.Millisecond), getOrderBound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("GetOrder with every watch open: slowest %s", slowest.Round(time.Millisecond))

	e.stack.Restart("payment", 0)
	restarted := time.Now()
	all := make(chan struct{})
	go func() {
		watchers.Wait()
		close(all)
	}()
	select {
	case <-all:
	case <-time.After(watchersEndBound):
		cancel() // the watchers still waiting fail, and are counted
		<-all
	}
	t.Logf("payment restarted; %d WatchOrder and %d SSE watchers saw their order end within %s",
		ended.Load(), sseEnded.Load(), time.Since(restarted).Round(time.Millisecond))
	if ended.Load() != openOrders || sseEnded.Load() != sseWatchers {
		t.Errorf("%d of %d WatchOrder and %d of %d SSE watchers saw their order end within %s",
			ended.Load(), openOrders, sseEnded.Load(), sseWatchers, watchersEndBound)
	}
	peak := mem.end()["order"]
	t.Logf("order-service peak RSS %d MB", peak>>20)
	if peak > watchersRSSBound {
		t.Errorf("order-service peak RSS %d MB with every watch open, want under %d MB", peak>>20, watchersRSSBound>>20)
	}
	e.verify(streamResult{Accepted: accepted, FaultEnd: restarted}, 0)
}

// watchEvents follows an order's Server-Sent Events until an event carries a terminal status.
func watchEvents(ctx context.Context, client *http.Client, url string, first func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data.WriteString(d)
			continue
		}
		if line != "" || data.Len() == 0 {
			continue
		}
		var w orderv1.WatchOrderResponse
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(data.String()), &w); err != nil {
			return fmt.Errorf("event %q: %w", data.String(), err)
		}
		data.Reset()
		if first != nil {
			first()
			first = nil
		}
		if terminal[w.GetOrder().GetStatus()] {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("stream ended before a final status")
}

// rssWatch samples the resident memory of every replica of some services every 250 ms.
type rssWatch struct {
	mu   sync.Mutex
	peak map[string]int64
	stop chan struct{}
	done chan struct{}
}

func (e *env) watchRSS(services ...string) *rssWatch {
	w := &rssWatch{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for _, svc := range services {
				for r := range e.stack.Replicas() {
					if pid := e.stack.PID(svc, r); pid != 0 {
						if n, err := rss(pid); err == nil {
							w.mu.Lock()
							w.peak[svc] = max(w.peak[svc], n)
							w.mu.Unlock()
						}
					}
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	e.t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			close(w.stop)
			<-w.done
		}
	})
	return w
}

// end stops sampling and returns the peak of each service.
func (w *rssWatch) end() map[string]int64 {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}
