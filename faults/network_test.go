//go:build faults

package faults

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// readyBound is how long after a network fault heals every replica may take to be ready again
// by itself. A service notices a dead broker connection by its heartbeat (10 s, three missed
// beats) or a failed round trip, and redials with a backoff of at most 5 s; a dead database
// connection fails its next round trip and the pool opens another. 20 s covers a redial that
// started just before the heal plus a loaded machine (0–4 s measured).
const readyBound = 20 * time.Second

// netRecoverBound bounds the probe order placed after a network fault: it completes once every
// service is ready again and its batch has gone through.
const netRecoverBound = 30 * time.Second

// network is a toxiproxy server of the test's own, with one proxy in front of the machine's
// RabbitMQ and one in front of its PostgreSQL: the stack's services reach both only through them.
type network struct {
	t                *testing.T
	client           *toxiproxy.Client
	broker, postgres *toxiproxy.Proxy
}

// startBehindProxy runs toxiproxy and a stack whose services reach the broker and their
// databases through it. The test's own checks (queue depths, audits, pg_stat_activity) connect
// directly.
func startBehindProxy(t *testing.T, opts stack.Options) (*env, *network) {
	t.Helper()
	n := startToxiproxy(t)
	opts.BrokerVia, opts.PostgresVia = n.broker.Listen, n.postgres.Listen
	return start(t, opts), n
}

func startToxiproxy(t *testing.T) *network {
	t.Helper()
	bin := toxiproxyBin(t)
	taken := map[string]bool{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := l.Addr().String()
	l.Close()
	taken[api] = true
	_, port, _ := net.SplitHostPort(api)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "toxiproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start toxiproxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	if err := waitPort(t.Context(), api, 10*time.Second); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	n := &network{t: t, client: toxiproxy.NewClient(api)}
	n.broker = n.proxy("broker", testenv.AMQPURL())
	n.postgres = n.proxy("postgres", testenv.PostgresURL())
	t.Logf("toxiproxy on %s: broker via %s, postgres via %s", api, n.broker.Listen, n.postgres.Listen)
	return n
}

// proxy creates a proxy on a free 127.0.0.1 port in front of the host:port of serverURL.
func (n *network) proxy(name, serverURL string) *toxiproxy.Proxy {
	n.t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		n.t.Fatalf("parse %s: %v", serverURL, err)
	}
	p, err := n.client.CreateProxy(name, "127.0.0.1:0", u.Host)
	if err != nil {
		n.t.Fatalf("create proxy %s: %v", name, err)
	}
	return p
}

// toxic adds a toxic to both directions of p (name-up, name-down); heal removes them.
func (n *network) toxic(p *toxiproxy.Proxy, name, kind string, attrs toxiproxy.Attributes) error {
	for _, stream := range []string{"upstream", "downstream"} {
		if _, err := p.AddToxic(name+"-"+stream, kind, stream, 1, attrs); err != nil {
			return fmt.Errorf("add %s toxic %s to %s: %w", kind, name, p.Name, err)
		}
	}
	return nil
}

func (n *network) heal(p *toxiproxy.Proxy, name string) error {
	for _, stream := range []string{"upstream", "downstream"} {
		if err := p.RemoveToxic(name + "-" + stream); err != nil {
			return fmt.Errorf("remove toxic %s-%s from %s: %w", name, stream, p.Name, err)
		}
	}
	return nil
}

var (
	toxiproxyOnce sync.Once
	toxiproxyPath string
	toxiproxyErr  error
)

// toxiproxyBin returns toxiproxy's server: $ORDERSAGA_BIN_DIR/toxiproxy-server when there,
// else one built from the version tools/go.mod pins.
func toxiproxyBin(t *testing.T) string {
	t.Helper()
	toxiproxyOnce.Do(func() {
		if dir := os.Getenv("ORDERSAGA_BIN_DIR"); dir != "" {
			if p := filepath.Join(dir, "toxiproxy-server"); fileExists(p) {
				toxiproxyPath = p
				return
			}
		}
		dir, err := os.MkdirTemp("", "ordersaga-toxiproxy-")
		if err != nil {
			toxiproxyErr = err
			return
		}
		toxiproxyPath = filepath.Join(dir, "toxiproxy-server")
		cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", toxiproxyPath, "github.com/Shopify/toxiproxy/v2/cmd/server")
		cmd.Dir = ".." // the repository root: tools/go.mod is relative to it
		if out, err := cmd.CombinedOutput(); err != nil {
			toxiproxyErr = fmt.Errorf("go build toxiproxy: %w\n%s", err, out)
		}
	})
	if toxiproxyErr != nil {
		t.Fatalf("toxiproxy: %v", toxiproxyErr)
	}
	return toxiproxyPath
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readiness samples every replica's /readyz while a fault lasts.
type readiness struct {
	began    time.Time
	mu       sync.Mutex
	notReady map[string]time.Duration // replicas seen not ready, with when it was first seen
	stop     chan struct{}
	done     chan struct{}
}

func (e *env) watchReadiness(ctx context.Context) *readiness {
	r := &readiness{began: time.Now(), notReady: map[string]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			for _, svc := range stack.Services {
				for i := range e.stack.Replicas() {
					if e.ops(ctx, svc, i, "/readyz") != 200 {
						name := fmt.Sprintf("%s-%d", svc, i)
						r.mu.Lock()
						if _, seen := r.notReady[name]; !seen {
							r.notReady[name] = time.Since(r.began)
						}
						r.mu.Unlock()
					}
				}
			}
			select {
			case <-r.stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return r
}

// end stops sampling, logs when each replica was first seen not ready and returns those
// replicas, sorted.
func (r *readiness) end(t *testing.T) []string {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.notReady {
		out = append(out, k)
	}
	slices.Sort(out)
	for _, k := range out {
		t.Logf("%s first seen not ready %s into the fault", k, r.notReady[k].Round(100*time.Millisecond))
	}
	return out
}

// waitAllReady waits until every replica answers /readyz 200, failing the test unless that
// happens within readyBound; it returns how long it took.
func (e *env) waitAllReady(ctx context.Context, what string) time.Duration {
	began := time.Now()
	for _, svc := range stack.Services {
		for i := range e.stack.Replicas() {
			for e.ops(ctx, svc, i, "/readyz") != 200 {
				if time.Since(began) > readyBound {
					e.t.Errorf("%s-%d not ready %s after %s, want at most %s", svc, i, time.Since(began).Round(time.Millisecond), what, readyBound)
					return time.Since(began)
				}
				if ctx.Err() != nil {
					return time.Since(began)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	took := time.Since(began)
	e.t.Logf("every service ready %s after %s", took.Round(time.Millisecond), what)
	return took
}

// everyService lists every replica's name, sorted.
func (e *env) everyService() []string {
	var out []string
	for _, svc := range stack.Services {
		for i := range e.stack.Replicas() {
			out = append(out, fmt.Sprintf("%s-%d", svc, i))
		}
	}
	slices.Sort(out)
	return out
}

// TestFaultNetworkLatency delays every byte from RabbitMQ and from PostgreSQL by 150 ± 50 ms
// for 20 s: each round trip of every service slows down, none may fail for good, and nothing
// may be lost or doubled.
func TestFaultNetworkLatency(t *testing.T) {
	e, n := startBehindProxy(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 560, Duration: 28 * time.Second, FaultAt: 3 * time.Second, RecoverWithin: netRecoverBound},
		func(ctx context.Context) {
			for _, p := range []*toxiproxy.Proxy{n.broker, n.postgres} {
				if _, err := p.AddToxic("latency", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 150, "jitter": 50}); err != nil {
					t.Errorf("latency on %s: %v", p.Name, err)
					return
				}
			}
			t.Log("latency 150 ± 50 ms on the broker and database links")
			pause(ctx, 20*time.Second)
			for _, p := range []*toxiproxy.Proxy{n.broker, n.postgres} {
				if err := p.RemoveToxic("latency"); err != nil {
					t.Errorf("heal %s: %v", p.Name, err)
				}
			}
			e.waitAllReady(ctx, "the latency ended")
		})
	e.verify(res, 0)
}

// TestFaultNetworkBrokerHalfOpen swallows every byte between the services and RabbitMQ for
// 40 s without closing anything (a half-open connection: a peer gone behind a firewall that
// drops, not rejects). The heartbeat must notice: every service says it is not ready during
// the fault, and reconnects by itself once the link carries bytes again.
func TestFaultNetworkBrokerHalfOpen(t *testing.T) {
	e, n := startBehindProxy(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 960, Duration: 48 * time.Second, FaultAt: 3 * time.Second, RecoverWithin: netRecoverBound},
		func(ctx context.Context) {
			ready := e.watchReadiness(ctx)
			if err := n.toxic(n.broker, "half-open", "timeout", toxiproxy.Attributes{"timeout": 0}); err != nil {
				t.Error(err)
				return
			}
			t.Log("broker link half-open: bytes swallowed both ways, nothing closed")
			pause(ctx, 40*time.Second)
			if err := n.heal(n.broker, "half-open"); err != nil {
				t.Error(err)
			}
			if seen, all := ready.end(t), e.everyService(); !slices.Equal(seen, all) {
				t.Errorf("seen not ready during the 40 s half-open broker link: %v, want every replica %v (the heartbeat did not notice)", seen, all)
			}
			e.waitAllReady(ctx, "the broker link healed")
		})
	e.verify(res, 0)
}

// TestFaultNetworkDatabaseHalfOpen swallows every byte between the services and PostgreSQL for
// 30 s without closing anything. No call may hang meanwhile: CreateOrder answers within the
// caller's deadline, refusing (UNAVAILABLE or DEADLINE_EXCEEDED), and readiness says not ready;
// once the link heals, the pools replace their dead connections and everything resumes.
func TestFaultNetworkDatabaseHalfOpen(t *testing.T) {
	e, n := startBehindProxy(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 760, Duration: 38 * time.Second, FaultAt: 3 * time.Second, RecoverWithin: netRecoverBound},
		func(ctx context.Context) {
			ready := e.watchReadiness(ctx)
			if err := n.toxic(n.postgres, "half-open", "timeout", toxiproxy.Attributes{"timeout": 0}); err != nil {
				t.Error(err)
				return
			}
			began := time.Now()
			t.Log("database link half-open: bytes swallowed both ways, nothing closed")
			pause(ctx, 3*time.Second)
			e.checkCreateAnswers(ctx, 2*time.Second)
			// What a client without a deadline meets, for the record: order-service's own bound.
			var wg sync.WaitGroup
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 25*time.Second)
				defer cancel()
				t0 := time.Now()
				_, err := e.orders[0].CreateOrder(cctx, e.request(1_000_000))
				t.Logf("CreateOrder with a 25 s deadline during the half-open link: %s after %s", status.Code(err), time.Since(t0).Round(time.Millisecond))
			})
			pause(ctx, 30*time.Second-time.Since(began))
			if err := n.heal(n.postgres, "half-open"); err != nil {
				t.Error(err)
			}
			if seen, all := ready.end(t), e.everyService(); !slices.Equal(seen, all) {
				t.Errorf("seen not ready during the 30 s half-open database link: %v, want every replica %v", seen, all)
			}
			e.waitAllReady(ctx, "the database link healed")
			wg.Wait()
		})
	e.verify(res, 0)
}

// checkCreateAnswers places a few orders with a caller's deadline d while the database cannot
// answer: each call must end within d (and a little scheduling slack) refused with UNAVAILABLE
// or DEADLINE_EXCEEDED, never hang past it nor succeed.
func (e *env) checkCreateAnswers(ctx context.Context, d time.Duration) {
	const calls = 5
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			t0 := time.Now()
			_, err := e.orders[0].CreateOrder(cctx, e.request(2_000_000+i))
			took := time.Since(t0)
			code := status.Code(err)
			if took > d+500*time.Millisecond {
				e.t.Errorf("CreateOrder with a %s deadline answered after %s (%s)", d, took.Round(time.Millisecond), code)
			}
			if code != codes.Unavailable && code != codes.DeadlineExceeded {
				e.t.Errorf("CreateOrder while the database link is half-open: %v, want UNAVAILABLE or DEADLINE_EXCEEDED", err)
			}
			e.t.Logf("CreateOrder with a %s deadline during the half-open link: %s after %s", d, code, took.Round(time.Millisecond))
		})
	}
	wg.Wait()
}

// TestFaultNetworkResetsAndCuts resets every broker connection every 1.5 s for 15 s (a
// reset_peer toxic for the connections that speak, then the proxy closing what is left) while
// every database connection is cut after 20 kB from the server: transactions die mid-way,
// publishes lose their confirms, deliveries their acks.
func TestFaultNetworkResetsAndCuts(t *testing.T) {
	e, n := startBehindProxy(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 440, Duration: 22 * time.Second, FaultAt: 3 * time.Second, RecoverWithin: netRecoverBound},
		func(ctx context.Context) {
			pools := e.pools()
			sessions := sessionsOf(ctx, t, pools)
			lost := e.logCounts(brokerLost)
			if err := n.toxic(n.postgres, "cut", "limit_data", toxiproxy.Attributes{"bytes": 20_000}); err != nil {
				t.Error(err)
				return
			}
			t.Log("database connections cut after 20 kB; broker connections reset every 1.5 s")
			began := time.Now()
			resets := 0
			for time.Since(began) < 15*time.Second && ctx.Err() == nil {
				tick := time.Now()
				if err := n.resetBroker(ctx); err != nil {
					t.Error(err)
					return
				}
				resets++
				pause(ctx, 1500*time.Millisecond-time.Since(tick))
			}
			if err := n.heal(n.postgres, "cut"); err != nil {
				t.Error(err)
			}
			t.Logf("%d broker resets; healed after %s", resets, time.Since(began).Round(time.Millisecond))
			e.waitAllReady(ctx, "the resets and cuts ended")
			// The faults reached the services: each lost its broker connection again and again,
			// and the busy database connections were cut (one that carries less than 20 kB in
			// the 15 s is not: a quiet service may keep its own).
			after := e.logCounts(brokerLost)
			for _, svc := range stack.Services {
				if d := after[svc] - lost[svc]; d < resets/2 {
					t.Errorf("%s lost its broker connection %d times in %d resets", svc, d, resets)
				}
			}
			pause(ctx, time.Second) // sessions are counted when a backend's statistics are flushed
			reopened := map[string]int64{}
			for svc, n := range sessionsOf(ctx, t, pools) {
				reopened[svc] = n - sessions[svc]
			}
			t.Logf("database sessions opened while connections were cut after 20 kB: %v", reopened)
			if reopened["order"] < 2 {
				t.Errorf("order-service opened %d database sessions while its connections were cut after 20 kB, want several", reopened["order"])
			}
		})
	e.verify(res, 0)
}

// resetBroker resets the broker connections: those that carry a byte within 300 ms get a TCP
// reset, and disabling the proxy closes the rest.
func (n *network) resetBroker(ctx context.Context) error {
	if err := n.toxic(n.broker, "reset", "reset_peer", toxiproxy.Attributes{"timeout": 0}); err != nil {
		return err
	}
	pause(ctx, 300*time.Millisecond)
	if err := n.heal(n.broker, "reset"); err != nil {
		return err
	}
	if err := n.broker.Disable(); err != nil {
		return fmt.Errorf("disable broker proxy: %w", err)
	}
	if err := n.broker.Enable(); err != nil {
		return fmt.Errorf("enable broker proxy: %w", err)
	}
	return nil
}

// brokerLost is what pkg/broker logs when a connection is lost.
const brokerLost = "broker connection lost"

// logCounts counts, per service, the lines of replica 0's log that contain s.
func (e *env) logCounts(s string) map[string]int {
	out := map[string]int{}
	for _, svc := range stack.Services {
		b, err := os.ReadFile(e.stack.LogPath(svc, 0))
		if err != nil {
			e.t.Errorf("read %s log: %v", svc, err)
			continue
		}
		out[svc] = strings.Count(string(b), s)
	}
	return out
}

// sessionsOf returns, per service, how many sessions its database has had. The same pools
// each time: their own connection then counts once, before the first look.
func sessionsOf(ctx context.Context, t *testing.T, pools map[string]*pgxpool.Pool) map[string]int64 {
	out := map[string]int64{}
	for svc, pool := range pools {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT sessions FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Errorf("%s sessions: %v", svc, err)
		}
		out[svc] = n
	}
	return out
}

// TestFaultNetworkBrokerThrottled throttles the broker link to 8 kB/s each way for 15 s:
// publishes, confirms, deliveries and heartbeats queue behind each other; none may be lost.
func TestFaultNetworkBrokerThrottled(t *testing.T) {
	e, n := startBehindProxy(t, stack.Options{})
	res := e.stream(streamOptions{Orders: 440, Duration: 22 * time.Second, FaultAt: 3 * time.Second, RecoverWithin: netRecoverBound},
		func(ctx context.Context) {
			if err := n.toxic(n.broker, "throttle", "bandwidth", toxiproxy.Attributes{"rate": 8}); err != nil {
				t.Error(err)
				return
			}
			t.Log("broker link throttled to 8 kB/s each way")
			pause(ctx, 15*time.Second)
			if err := n.heal(n.broker, "throttle"); err != nil {
				t.Error(err)
			}
			e.waitAllReady(ctx, "the throttle ended")
		})
	e.verify(res, 0)
}
