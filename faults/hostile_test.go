//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/catalog"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// TestFaultBrokerRefusesDeclare takes every right on the stack's virtual host from the
// services' broker user (a permissions change during a deploy) and drops every connection, for
// 15 s: each service can connect but not declare its topology. Meanwhile every replica must
// say it is not ready (/readyz, gRPC health NOT_SERVING) yet alive (/healthz 200: restarting it
// would not help); once the rights are back, each resumes by itself and new orders complete.
func TestFaultBrokerRefusesDeclare(t *testing.T) {
	e := start(t, stack.Options{})
	var refused atomic.Bool
	t.Cleanup(func() { // before the stack's own cleanup, which deletes the vhost
		if refused.Load() {
			if err := e.setPermissions(context.Background(), ".*"); err != nil {
				t.Errorf("restore permissions: %v", err)
			}
		}
	})
	health := e.healthClients()
	res := e.stream(streamOptions{RecoverWithin: 20 * time.Second}, func(ctx context.Context) {
		refused.Store(true)
		if err := e.setPermissions(ctx, "^$"); err != nil {
			t.Errorf("refuse permissions: %v", err)
			return
		}
		// The management API lists a new connection only after a few seconds: close what it
		// lists until it has listed one per process.
		closed, want := 0, len(stack.Services)*e.stack.Replicas()
		for deadline := time.Now().Add(20 * time.Second); closed < want; {
			n, err := testenv.CloseVHostConnections(ctx, e.stack.AMQPURL)
			if err != nil {
				t.Errorf("close connections: %v", err)
				return
			}
			if closed += n; closed < want && time.Now().After(deadline) {
				t.Errorf("only %d connections listed to close, want %d", closed, want)
				return
			}
			pause(ctx, 200*time.Millisecond)
		}
		t.Logf("permissions refused, %d connections closed", closed)
		began := time.Now()
		// gRPC health follows readiness once a second: from 3 s on, every look must find every
		// replica not ready and alive.
		pause(ctx, 3*time.Second)
		looks := 0
		for time.Since(began) < 15*time.Second && ctx.Err() == nil {
			e.checkNotReady(ctx, health)
			looks++
			pause(ctx, 500*time.Millisecond)
		}
		if err := e.setPermissions(ctx, ".*"); err != nil {
			t.Errorf("restore permissions: %v", err)
			return
		}
		refused.Store(false)
		t.Logf("permissions restored after %s; %d looks found every service not ready and alive", time.Since(began).Round(time.Millisecond), looks)
	})
	e.verify(res, 0)
}

// TestFaultTopologyDeleted deletes, under running services, the queue of order.created and
// then the exchange it is published on (an operator's mistake). The services notice (the
// consumer's cancel notification or its subscription watch, a publish channel closed by the
// missing exchange, events returned as unroutable) and declare the topology again; new orders
// complete within seconds, and no event published while the queue or the exchange was missing
// is lost. What was in the queue when it was deleted is lost with it (docs/faults.md):
// an order.created confirmed a moment before; such an order is cancelled by its saga deadline,
// 30 s here, and only an order created around the deletion may end so.
func TestFaultTopologyDeleted(t *testing.T) {
	e := start(t, stack.Options{Env: map[string]string{"ORDER_SAGA_TIMEOUT": "30s"}})
	var deleted atomic.Int64 // unix nanoseconds
	e.expired = func(o *orderv1.Order) bool {
		at := time.Unix(0, deleted.Load())
		return o.GetCreateTime().AsTime().After(at.Add(-2*time.Second)) && o.GetCreateTime().AsTime().Before(at.Add(2*time.Second))
	}
	queue, exchange := "", catalog.Exchange(catalog.OrderCreated)
	for _, s := range catalog.Subscriptions() {
		if s.RoutingKey == catalog.OrderCreated {
			queue = s.Queue()
		}
	}
	// New orders complete again within a second, unless the broker left payment-service's
	// consumer subscribed to nothing: the dead subscription takes up to its prefetch (256
	// events, 11 s of this stream) before its watch sees events wait, 0.1–15 s measured.
	res := e.stream(streamOptions{RecoverWithin: 30 * time.Second}, func(ctx context.Context) {
		vhost := e.vhostPath()
		queuePath, exchangePath := "/api/queues/"+vhost+"/"+url.PathEscape(queue), "/api/exchanges/"+vhost+"/"+url.PathEscape(exchange)
		began := time.Now()
		deleted.Store(began.UnixNano())
		if err := testenv.Management(ctx, http.MethodDelete, queuePath, nil); err != nil {
			t.Errorf("delete queue %s: %v", queue, err)
			return
		}
		pause(ctx, 200*time.Millisecond)
		if err := testenv.Management(ctx, http.MethodDelete, exchangePath, nil); err != nil {
			t.Errorf("delete exchange %s: %v", exchange, err)
			return
		}
		t.Logf("deleted queue %s and exchange %s", queue, exchange)
		for _, path := range []string{queuePath, exchangePath} {
			for testenv.Management(ctx, http.MethodGet, path, nil) != nil {
				if time.Since(began) > 10*time.Second {
					t.Errorf("%s not declared again within 10s", path)
					return
				}
				pause(ctx, 100*time.Millisecond)
			}
		}
		t.Logf("both declared again within %s", time.Since(began).Round(time.Millisecond))
	})
	e.verify(res, 0)
	t.Logf("%d order(s) lost their order.created with the queue and were cancelled by their deadline", e.deadline)
	// What the relay saw: order.created returned while its queue was missing, or lost with the
	// channel the missing exchange closed, is published again.
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	for _, outcome := range []string{"returned", "nacked", "failed"} {
		n, err := e.metric(ctx, "order", "ordersaga_events_published_total", `outcome="`+outcome+`"`)
		if err != nil {
			t.Fatalf("metric: %v", err)
		}
		t.Logf("order-service publishes %s: %v", outcome, n)
	}
}

// TestFaultPausedReplicas runs two replicas of every service and pauses (SIGSTOP) one replica
// each of order, payment and inventory for 25 s: far past the AMQP heartbeat (3 s here), so
// that the broker gives their deliveries to the healthy replicas, and past the database's
// idle-in-transaction timeout, so that whatever transaction, row lock or inbox claim a paused
// replica held is ended by the server. The healthy replicas keep the saga moving meanwhile;
// once resumed (SIGCONT), the paused ones find their connections gone and rejoin.
func TestFaultPausedReplicas(t *testing.T) {
	e := start(t, stack.Options{Replicas: 2, AMQPParams: "heartbeat=3"})
	paused := []string{"order", "payment", "inventory"}
	var stopped atomic.Bool
	t.Cleanup(func() {
		if stopped.Load() {
			for _, svc := range paused {
				_ = e.stack.Resume(svc, 0)
			}
		}
	})
	orderDB := e.pools()["order"]
	res := e.stream(streamOptions{FaultAt: 3 * time.Second, RecoverWithin: 20 * time.Second}, func(ctx context.Context) {
		before, err := terminalOrders(ctx, orderDB)
		if err != nil {
			t.Errorf("count orders: %v", err)
			return
		}
		stopped.Store(true)
		for _, svc := range paused {
			if err := e.stack.Pause(svc, 0); err != nil {
				t.Errorf("pause %s-0: %v", svc, err)
				return
			}
		}
		t.Logf("paused %s, replica 0", strings.Join(paused, ", "))
		pause(ctx, 25*time.Second)
		after, err := terminalOrders(ctx, orderDB)
		if err != nil {
			t.Errorf("count orders: %v", err)
		}
		for _, svc := range paused {
			if err := e.stack.Resume(svc, 0); err != nil {
				t.Errorf("resume %s-0: %v", svc, err)
			}
		}
		stopped.Store(false)
		t.Logf("resumed; %d orders finished their saga while paused", after-before)
		// The stream places about 24 orders a second; the healthy replicas must have finished
		// a good part of those placed during the pause, not merely what was in flight.
		if after-before < 100 {
			t.Errorf("only %d orders finished their saga during the 25 s pause: the healthy replicas did not carry it", after-before)
		}
	})
	e.verify(res, 0)
	e.checkAllReady(t.Context())
}

// TestFaultDatabaseStormAndReadOnly terminates every backend of the stack's four databases
// every two seconds for 10 s, then makes each database read-only for 10 s (as a failover seen
// from the service: sessions land on a standby), terminating the backends so that new sessions
// see it, and back. No CreateOrder may fail back to the client (order-service retries a lost
// connection or a read-only error itself: every order's id is chosen before its insert), no
// event may be dead-lettered, and no consumer may requeue an event (a requeue spends the
// queue's delivery limit the way poison does).
func TestFaultDatabaseStormAndReadOnly(t *testing.T) {
	e := start(t, stack.Options{})
	admin, err := pgx.Connect(t.Context(), testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	var dbs []string
	for _, svc := range stack.Services {
		cfg, err := pgx.ParseConfig(e.stack.DatabaseURLs[svc])
		if err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, cfg.Database)
	}
	terminate := func(ctx context.Context) int {
		var n int
		err := admin.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int FROM pg_stat_activity
			WHERE datname = ANY($1) AND backend_type = 'client backend' AND pid <> pg_backend_pid()`, dbs).Scan(&n)
		if err != nil {
			t.Errorf("terminate backends: %v", err)
		}
		return n
	}
	readOnly := func(ctx context.Context, on bool) {
		for _, db := range dbs {
			stmt := "ALTER DATABASE " + pgx.Identifier{db}.Sanitize() + " RESET default_transaction_read_only"
			if on {
				stmt = "ALTER DATABASE " + pgx.Identifier{db}.Sanitize() + " SET default_transaction_read_only = on"
			}
			if _, err := admin.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	}
	res := e.stream(streamOptions{Orders: 600, Duration: 30 * time.Second, FaultAt: 3 * time.Second,
		// Longer than the read-only window: order-service retries for the client meanwhile.
		CallTimeout: 45 * time.Second, RecoverWithin: 15 * time.Second}, func(ctx context.Context) {
		for round := 1; round <= 5; round++ {
			n := terminate(ctx)
			if n == 0 {
				t.Errorf("storm round %d: no backend to terminate", round)
			}
			t.Logf("storm round %d: %d backends terminated", round, n)
			pause(ctx, 2*time.Second)
		}
		readOnly(ctx, true)
		t.Logf("databases read-only, %d backends terminated", terminate(ctx))
		pause(ctx, 10*time.Second)
		readOnly(ctx, false)
		t.Logf("databases writable again, %d backends terminated", terminate(ctx))
	})
	if res.Retried > 0 || res.Skipped > 0 {
		t.Errorf("%d CreateOrder calls failed back to the client (%d orders given up on)", res.Retried, res.Skipped)
	}
	e.verify(res, 0)
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	for _, svc := range stack.Services {
		for _, outcome := range []string{"requeued", "dead_lettered", "retried"} {
			n, err := e.metric(ctx, svc, "ordersaga_events_consumed_total", `outcome="`+outcome+`"`)
			if err != nil {
				t.Fatalf("%s metrics: %v", svc, err)
			}
			if outcome == "retried" {
				t.Logf("%s: %v events retried in process", svc, n)
			} else if n > 0 {
				t.Errorf("%s: %v events %s", svc, n, outcome)
			}
		}
	}
}

// vhostPath is the stack's virtual host as the management API's paths spell it.
func (e *env) vhostPath() string {
	u, err := url.Parse(e.stack.AMQPURL)
	if err != nil {
		e.t.Fatalf("parse amqp url: %v", err)
	}
	return url.PathEscape(strings.TrimPrefix(u.Path, "/"))
}

// setPermissions gives the stack's broker user the rights pattern (".*" all, "^$" none) to
// configure, write and read on the stack's virtual host.
func (e *env) setPermissions(ctx context.Context, pattern string) error {
	u, err := url.Parse(e.stack.AMQPURL)
	if err != nil {
		return err
	}
	perm := map[string]string{"configure": pattern, "write": pattern, "read": pattern}
	return testenv.Management(ctx, http.MethodPut, "/api/permissions/"+e.vhostPath()+"/"+url.PathEscape(u.User.Username()), perm)
}

// healthClient is the gRPC health service of one replica, with the service name it reports on.
type healthClient struct {
	name    string
	service string
	client  healthpb.HealthClient
}

// healthClients returns the gRPC health clients of every order and inventory replica.
func (e *env) healthClients() []healthClient {
	e.t.Helper()
	var out []healthClient
	for _, svc := range []struct{ name, service string }{
		{"order", orderv1.OrderService_ServiceDesc.ServiceName},
		{"inventory", inventoryv1.InventoryService_ServiceDesc.ServiceName},
	} {
		for r := range e.stack.Replicas() {
			cc, err := grpc.NewClient(e.stack.Addr(svc.name, r, "grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				e.t.Fatalf("health client: %v", err)
			}
			e.t.Cleanup(func() { cc.Close() })
			out = append(out, healthClient{fmt.Sprintf("%s-%d", svc.name, r), svc.service, healthpb.NewHealthClient(cc)})
		}
	}
	return out
}

// checkNotReady fails the test unless every replica answers /readyz 503 and /healthz 200, and
// gRPC health NOT_SERVING.
func (e *env) checkNotReady(ctx context.Context, health []healthClient) {
	for _, svc := range stack.Services {
		for r := range e.stack.Replicas() {
			if code := e.ops(ctx, svc, r, "/readyz"); code != http.StatusServiceUnavailable {
				e.t.Errorf("%s-%d /readyz: %d while the broker refuses it, want 503", svc, r, code)
			}
			if code := e.ops(ctx, svc, r, "/healthz"); code != http.StatusOK {
				e.t.Errorf("%s-%d /healthz: %d while it can still recover, want 200", svc, r, code)
			}
		}
	}
	for _, h := range health {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := h.client.Check(cctx, &healthpb.HealthCheckRequest{Service: h.service})
		cancel()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			e.t.Errorf("%s gRPC health: %v %v while the broker refuses it, want NOT_SERVING", h.name, resp.GetStatus(), err)
		}
	}
}

// checkAllReady fails the test unless every replica answers /readyz 200 within a few seconds.
func (e *env) checkAllReady(ctx context.Context) {
	for _, svc := range stack.Services {
		for r := range e.stack.Replicas() {
			deadline := time.Now().Add(10 * time.Second)
			for e.ops(ctx, svc, r, "/readyz") != http.StatusOK {
				if time.Now().After(deadline) {
					e.t.Errorf("%s-%d not ready again", svc, r)
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}

// ops returns the status code of a GET of path on a replica's ops port, 0 when it does not answer.
func (e *env) ops(ctx context.Context, svc string, replica int, path string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.stack.OpsAddr(svc, replica)+path, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// terminalOrders counts the orders whose saga has finished.
func terminalOrders(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status IN ('CONFIRMED', 'PAYMENT_FAILED', 'CANCELLED')`).Scan(&n)
	return n, err
}
