//go:build faults && upgrade

// The rolling upgrade from the previous release runs with make test-upgrade (in CI, .ci/run): it
// builds that release from its commit once, into the user's cache directory.

package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/release"
	"github.com/ordersaga/ordersaga/internal/stack"
)

// upgradeOverlap is how long a new replica and the old one it replaces run side by side: long
// enough for each to take a share of every queue and, for order-service, of CreateOrder calls.
const upgradeOverlap = 6 * time.Second

// previousRelease returns the previous release (RELEASES) and a directory with its four
// binaries, built from its commit the first time.
func previousRelease(t *testing.T) (release.Release, string) {
	t.Helper()
	root, err := release.Root()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := release.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := release.Previous(rs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	began := time.Now()
	dir, err := release.Binaries(ctx, root, prev)
	if err != nil {
		t.Fatalf("build %s: %v", prev, err)
	}
	t.Logf("%s binaries in %s (%s)", prev, dir, time.Since(began).Round(time.Millisecond))
	return prev, dir
}

// TestFaultRollingUpgrade runs the previous release (RELEASES) on its own databases and virtual
// host under a stream of orders, and replaces each service the way a rolling update does:
// a replica of the code under test starts beside the old one on the same database and queues
// (it migrates the database first), both run for upgradeOverlap, then the old one gets SIGTERM;
// order-service last, with two new replicas migrating its database at once. The old replicas
// must keep working on the migrated databases meanwhile (expand/contract, docs/upgrades.md):
// each stays ready, handles events and, for order-service, CreateOrder calls without an error,
// and exits cleanly; then the suite's invariants.
func TestFaultRollingUpgrade(t *testing.T) {
	prev, oldBin := previousRelease(t)
	e := start(t, stack.Options{BinDir: oldBin})
	t.Logf("running %s", prev)
	before := e.migrationVersions(t.Context())

	// Clients reach order-service through one connection balancing over the replicas that
	// serve, as through a Kubernetes Service: a replica is taken out before it is stopped.
	lb := newOrderBalancer(t, e.stack.Addr("order", 0, "grpc"))
	e.orders = []orderv1.OrderServiceClient{lb.client}

	res := e.stream(streamOptions{Orders: 1200, Duration: 60 * time.Second, FaultAt: 5 * time.Second, RecoverWithin: 30 * time.Second},
		func(ctx context.Context) {
			for _, svc := range []string{"payment", "inventory", "shipping", "order"} {
				if !e.replace(ctx, svc, lb) {
					return
				}
			}
		})
	t.Logf("migration versions (service/inbox/outbox): %s before, %s after", fmtVersions(before), fmtVersions(e.migrationVersions(t.Context())))
	e.verify(res, 0)
}

// replace runs one service's rolling update: new replicas beside old replica 0, both sides
// checked while they overlap, then old replica 0 stopped. It reports whether to go on.
func (e *env) replace(ctx context.Context, svc string, lb *orderBalancer) bool {
	t := e.t
	const old = 0
	newReplicas := 1
	if svc == "order" {
		newReplicas = 2 // two new replicas migrating at once, on a database the old one uses
	}
	began := time.Now()
	var mu sync.Mutex
	var started []int
	var wg sync.WaitGroup
	for range newReplicas {
		wg.Go(func() {
			r, err := e.stack.StartReplica(ctx, svc, "")
			if err != nil {
				t.Errorf("start a new %s replica beside the old one: %v", svc, err)
				return
			}
			mu.Lock()
			started = append(started, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(started) < newReplicas {
		return false
	}
	t.Logf("%s: new replica(s) %v ready in %s beside the old one", svc, started, time.Since(began).Round(time.Millisecond))
	addrs := []string{e.stack.Addr(svc, old, "grpc")}
	if svc == "order" {
		for _, r := range started {
			addrs = append(addrs, e.stack.Addr(svc, r, "grpc"))
		}
		lb.serve(addrs...)
	}
	// Counted from here: the new replicas have migrated the database the old one runs on.
	oldBefore := e.replicaCounters(ctx, svc, old)
	newBefore := map[int]counters{}
	for _, r := range started {
		newBefore[r] = e.replicaCounters(ctx, svc, r)
	}

	pause(ctx, upgradeOverlap)

	// The old replica, on a database its successors have migrated, must still be ready and
	// still do its work: events handled, and, for order-service, orders accepted.
	if code, err := readyz(ctx, e.stack.OpsAddr(svc, old)); code != http.StatusOK {
		t.Errorf("old %s not ready beside the new one: %d %v", svc, code, err)
	}
	if !e.checkOverlap(svc, "old "+svc, oldBefore, e.replicaCounters(ctx, svc, old)) {
		t.Logf("old %s's errors beside the new release:\n%s", svc, errorLines(e.stack.LogPath(svc, old), 5))
	}
	for _, r := range started {
		if !e.checkOverlap(svc, fmt.Sprintf("new %s-%d", svc, r), newBefore[r], e.replicaCounters(ctx, svc, r)) {
			t.Logf("new %s-%d's errors beside the old release:\n%s", svc, r, errorLines(e.stack.LogPath(svc, r), 5))
		}
	}

	if svc == "order" || svc == "inventory" {
		if svc == "order" {
			lb.serve(addrs[1:]...)
			pause(ctx, time.Second) // calls already on the old replica finish
		}
		if err := e.stack.UseReplica(svc, started[0]); err != nil {
			t.Errorf("use the new %s: %v", svc, err)
		}
	}
	stopped := time.Now()
	if err := e.stack.Stop(svc, old); err != nil {
		t.Errorf("old %s after SIGTERM: %v", svc, err)
	}
	t.Logf("%s: old replica stopped in %s", svc, time.Since(stopped).Round(time.Millisecond))
	pause(ctx, time.Second)
	return ctx.Err() == nil
}

// counters are a replica's counts the upgrade test compares across the overlap.
type counters struct {
	consumed     float64 // events handled with outcome ok
	notConsumed  map[string]float64
	created      float64 // CreateOrder calls answered OK
	createFailed map[string]float64
}

// checkOverlap fails the test unless a replica handled events during the overlap (every
// service consumes some) and, for order-service, accepted orders without a server-side error;
// it reports whether it did. Retried or requeued events are logged: competing replicas can
// conflict on a row and retry, what the invariants judge is that everything ends right.
func (e *env) checkOverlap(svc, who string, before, after counters) bool {
	t := e.t
	ok := true
	fail := func(format string, args ...any) {
		t.Errorf(format, args...)
		ok = false
	}
	consumed := after.consumed - before.consumed
	if consumed <= 0 {
		fail("%s handled no event while it ran beside the other release", who)
	}
	for outcome, n := range after.notConsumed {
		if d := n - before.notConsumed[outcome]; d > 0 {
			t.Logf("%s: %v events %s during the overlap", who, d, outcome)
			if outcome == "dead_lettered" {
				fail("%s dead-lettered %v events beside the other release", who, d)
			}
		}
	}
	line := fmt.Sprintf("%s: %v events handled during the overlap", who, consumed)
	if svc == "order" {
		created := after.created - before.created
		line += fmt.Sprintf(", %v orders created", created)
		if created <= 0 {
			fail("%s created no order while it ran beside the other release", who)
		}
		for code, n := range after.createFailed {
			if d := n - before.createFailed[code]; d > 0 {
				fail("%s answered %v CreateOrder calls with %s beside the other release", who, d, code)
			}
		}
	}
	t.Log(line)
	return ok
}

// replicaCounters scrapes one replica's metrics. The names are those of the previous release
// too (ordersaga_events_consumed_total, the gRPC server's grpc_server_handled_total).
func (e *env) replicaCounters(ctx context.Context, svc string, replica int) counters {
	c := counters{notConsumed: map[string]float64{}, createFailed: map[string]float64{}}
	samples, err := scrape(ctx, e.stack.OpsAddr(svc, replica))
	if err != nil {
		e.t.Errorf("metrics of %s-%d: %v", svc, replica, err)
		return c
	}
	for _, s := range samples {
		switch s.name {
		case "ordersaga_events_consumed_total":
			if s.labels["outcome"] == "ok" {
				c.consumed += s.value
			} else {
				c.notConsumed[s.labels["outcome"]] += s.value
			}
		case "grpc_server_handled_total":
			if s.labels["grpc_method"] != "CreateOrder" {
				continue
			}
			switch code := s.labels["grpc_code"]; code {
			case "OK":
				c.created += s.value
			case "Canceled", "DeadlineExceeded": // the client gave up: load, not the release
			default:
				c.createFailed[code] += s.value
			}
		}
	}
	return c
}

// errorLines returns the first n lines of a process log at level ERROR or WARN.
func errorLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			if out = append(out, line); len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// scrape reads every sample of a replica's /metrics.
func scrape(ctx context.Context, opsAddr string) ([]sample, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+opsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s := sample{name: line[:i], labels: map[string]string{}, value: v}
		if j := strings.IndexByte(line, '{'); j >= 0 && j < i {
			s.name = line[:j]
			for _, m := range labelRE.FindAllStringSubmatch(line[j:i], -1) {
				s.labels[m[1]] = m[2]
			}
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// orderBalancer is one client connection that balances CreateOrder and the other calls over
// the order-service replicas it is told serve, round robin.
type orderBalancer struct {
	r      *manual.Resolver
	client orderv1.OrderServiceClient
}

func newOrderBalancer(t *testing.T, addrs ...string) *orderBalancer {
	t.Helper()
	r := manual.NewBuilderWithScheme("upgrade")
	r.InitialState(resolver.State{Addresses: resolverAddrs(addrs)})
	cc, err := grpc.NewClient(r.Scheme()+":///order",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatalf("order client: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return &orderBalancer{r: r, client: orderv1.NewOrderServiceClient(cc)}
}

// serve makes addrs the replicas that calls go to from now on.
func (b *orderBalancer) serve(addrs ...string) {
	b.r.UpdateState(resolver.State{Addresses: resolverAddrs(addrs)})
}

func resolverAddrs(addrs []string) []resolver.Address {
	out := make([]resolver.Address, len(addrs))
	for i, a := range addrs {
		out[i] = resolver.Address{Addr: a}
	}
	return out
}
