// Package stack runs the whole system — the four services as real processes on their own
// databases and RabbitMQ virtual host — for end-to-end tests and the benchmark.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// Services are the services a Stack runs.
var Services = []string{"order", "payment", "inventory", "shipping"}

// Bounds of the process lifecycle.
const (
	ReadyTimeout = 60 * time.Second // a process answers /readyz 200 within this
	StopTimeout  = 20 * time.Second // Stop waits this long for a SIGTERMed process to exit
	killAfter    = 15 * time.Second // cleanup SIGKILLs what SIGTERM has not ended by then
)

// Options configure a Stack.
type Options struct {
	Replicas int               // processes per service; 0 means 1
	Env      map[string]string // extra environment for every process, overriding the stack's own
	// DatabaseParams are added to the query of every service's database URL as the services
	// see it, e.g. "pool_max_conns=16" (pgxpool settings), for tuning experiments.
	DatabaseParams string
	// AMQPParams are added to the query of the AMQP URL the services see, e.g. "heartbeat=2"
	// (seconds), so that a fault test finds a paused process's connection dead sooner.
	AMQPParams string
	// DialOptions are added to those of the stack's own gRPC clients (OrderClient,
	// InventoryClient), e.g. TLS credentials and a token when Env turns them on. Transport
	// credentials given here replace the default plaintext.
	DialOptions []grpc.DialOption
	// Broker, when set, is the broker (a cluster's nodes) the stack creates its virtual host on,
	// instead of the machine's one that testenv names.
	Broker *Broker
	// PostgresURL, when set, is the server the stack creates its databases on, instead of the
	// machine's one that testenv names. It may be a libpq multi-host URL (a primary and its
	// standby, target_session_attrs=read-write): the services get their database URLs in the
	// same form.
	PostgresURL string
	// BrokerVia and PostgresVia, when set, are the host:port the services reach the broker and
	// their databases through (a TCP fault proxy in front of a single-node broker and server).
	// The stack's own connections and the URLs it exposes stay direct, so that a test's checks
	// do not suffer the faults it injects.
	BrokerVia, PostgresVia string
	// BinDir, when set, holds the service binaries the stack runs instead of those binDir finds,
	// e.g. a previous release's built by internal/release for an upgrade test.
	BinDir string
}

// Broker is a RabbitMQ broker of one node or a cluster's several.
type Broker struct {
	ManagementURL string   // http://user:password@host:port of one node's management API
	AMQPURLs      []string // amqp://user:password@host:port/ of every node
}

// urls returns the AMQP URL of each node with the path of vhostURL (the virtual host).
func (b *Broker) urls(vhostURL string) ([]string, error) {
	v, err := url.Parse(vhostURL)
	if err != nil {
		return nil, fmt.Errorf("parse amqp url: %w", err)
	}
	out := make([]string, len(b.AMQPURLs))
	for i, node := range b.AMQPURLs {
		u, err := url.Parse(node)
		if err != nil {
			return nil, fmt.Errorf("parse amqp url: %w", err)
		}
		u.Path, u.RawPath = v.Path, v.RawPath
		out[i] = u.String()
	}
	return out, nil
}

// Stack is a running system. The addresses are host:port of replica 0.
type Stack struct {
	// AMQPURL is the stack's virtual host; on a Broker of several nodes, every node's URL
	// separated by commas, as the services take it.
	AMQPURL       string
	DatabaseURLs  map[string]string // service → database URL
	OrderGRPC     string
	OrderHTTP     string
	InventoryGRPC string

	nodeURLs []string // AMQPURL per broker node; one entry without Options.Broker
	opts     Options
	taken    map[string]bool // every address handed out, so that a replica started later gets its own
	placed   int             // processes planned so far, to spread them over the broker's nodes
	dial     []grpc.DialOption
	logDir   string
	procs    map[string][]*process
	orderCC  *grpc.ClientConn
	invCC    *grpc.ClientConn
	order    orderv1.OrderServiceClient
	inv      inventoryv1.InventoryServiceClient
	mu       sync.Mutex // guards procs' running state across Kill/Stop/Restart
	teardown []func() error
	tb       testing.TB // set by Start: Restart fails the test through it
}

// Start runs a Stack for the test and removes everything at cleanup: processes first, then the
// databases and the virtual host. On failure it logs the tail of every process log.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	testenv.Needs(t, "the running services, PostgreSQL and RabbitMQ")
	logDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, stop, err := StartWith(ctx, opts, logDir)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	s.tb = t
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service logs:\n%s", s.LogTails(40))
		}
		stop()
	})
	return s
}

// StartWith runs a Stack outside of a test: it creates the databases and the virtual host,
// starts every process with its logs in logDir and waits until all are ready. The returned
// function stops the processes and drops what was created; calling it again does nothing.
func StartWith(ctx context.Context, opts Options, logDir string) (*Stack, func(), error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = binDir(); err != nil {
			return nil, nil, err
		}
	} else if err := checkBinaries(bin); err != nil {
		return nil, nil, err
	}
	for attempt := 1; ; attempt++ {
		s := &Stack{DatabaseURLs: map[string]string{}, logDir: logDir, procs: map[string][]*process{}}
		stop := func() {
			for i := len(s.teardown) - 1; i >= 0; i-- {
				if err := s.teardown[i](); err != nil {
					fmt.Fprintf(os.Stderr, "stack teardown: %v\n", err)
				}
			}
			s.teardown = nil
		}
		err := s.start(ctx, bin, opts)
		if err == nil {
			return s, stop, nil
		}
		stop()
		// A port found free can be taken by another process before the service binds it:
		// start again on fresh ports.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return nil, nil, err
		}
	}
}

// start creates and starts everything, registering each undo step in s.teardown as it goes.
func (s *Stack) start(ctx context.Context, bin string, opts Options) error {
	var err error
	if err = s.createVHost(ctx, opts.Broker); err != nil {
		return err
	}
	server := opts.PostgresURL
	if server == "" {
		server = testenv.PostgresURL()
	}
	for _, svc := range Services {
		if s.DatabaseURLs[svc], err = s.createDatabase(ctx, server, svc); err != nil {
			return err
		}
	}
	if err := s.plan(bin, opts); err != nil {
		return err
	}
	s.teardown = append(s.teardown, s.stopAll)
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.dial = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts.DialOptions...)
	s.teardown = append(s.teardown, s.closeClients)
	if err := s.UseReplica("order", 0); err != nil {
		return err
	}
	return s.UseReplica("inventory", 0)
}

// UseReplica points the stack's own client of svc (OrderClient, InventoryClient) and its
// address field at replica, e.g. before the replica it used is stopped for good.
func (s *Stack) UseReplica(svc string, replica int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.proc(svc, replica).addrs["grpc"]
	cc, err := grpc.NewClient(addr, s.dial...)
	if err != nil {
		return fmt.Errorf("%s client: %w", svc, err)
	}
	var old *grpc.ClientConn
	switch svc {
	case "order":
		old, s.orderCC, s.OrderGRPC = s.orderCC, cc, addr
		s.OrderHTTP = s.proc(svc, replica).addrs["http"]
		s.order = orderv1.NewOrderServiceClient(cc)
	case "inventory":
		old, s.invCC, s.InventoryGRPC = s.invCC, cc, addr
		s.inv = inventoryv1.NewInventoryServiceClient(cc)
	default:
		cc.Close()
		return fmt.Errorf("%s serves no gRPC", svc)
	}
	if old != nil {
		old.Close()
	}
	return nil
}

func (s *Stack) closeClients() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cc := range []*grpc.ClientConn{s.orderCC, s.invCC} {
		if cc != nil {
			cc.Close()
		}
	}
	return nil
}

// OrderClient is a client of order-service replica 0, or of the replica UseReplica named.
func (s *Stack) OrderClient() orderv1.OrderServiceClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order
}

// InventoryClient is a client of inventory-service replica 0, or of the replica UseReplica named.
func (s *Stack) InventoryClient() inventoryv1.InventoryServiceClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inv
}

// OpsAddr is the host:port of a replica's ops server (/healthz, /readyz, /metrics).
func (s *Stack) OpsAddr(svc string, replica int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc(svc, replica).opsAddr
}

// Addr is the host:port a replica serves name on: "grpc" (order, inventory), "http" (order) or "ops".
func (s *Stack) Addr(svc string, replica int, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc(svc, replica).addrs[name]
}

// PID is the process id of a running replica, or 0 when it is not running, so that the
// benchmark can read each replica's CPU time from /proc.
func (s *Stack) PID(svc string, replica int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc(svc, replica)
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Replicas is the number of processes each service runs.
func (s *Stack) Replicas() int { return len(s.procs[Services[0]]) }

// StartReplica starts one more replica of svc beside the others, on the same database and
// virtual host, from the binary in the directory bin ("" for the code under test, as binDir
// finds it, whatever Options.BinDir says), and waits until it is ready: the new replica of a
// rolling update. It returns the replica's number.
func (s *Stack) StartReplica(ctx context.Context, svc, bin string) (int, error) {
	if bin == "" {
		var err error
		if bin, err = binDir(); err != nil {
			return 0, err
		}
	}
	if err := checkBinaries(bin); err != nil {
		return 0, err
	}
	s.mu.Lock()
	r := len(s.procs[svc])
	p, err := s.planProcess(svc, r, bin)
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	s.procs[svc] = append(s.procs[svc], p)
	err = p.start()
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	// Not under s.mu: a replica migrating its database can take a while, and the test may stop
	// or signal others meanwhile.
	if err := p.waitReady(ctx, ReadyTimeout); err != nil {
		return 0, err
	}
	return r, nil
}

// LogPath is the file a replica's stdout and stderr go to.
func (s *Stack) LogPath(svc string, replica int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc(svc, replica).logPath
}

// Kill sends SIGKILL to a replica and waits until it is gone.
func (s *Stack) Kill(svc string, replica int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc(svc, replica).kill()
}

// Pause stops a replica with SIGSTOP: it keeps its sockets and its place in every
// transaction but runs no code, as a process descheduled or swapped out for a long time does.
func (s *Stack) Pause(svc string, replica int) error {
	return s.signal(svc, replica, syscall.SIGSTOP)
}

// Resume lets a paused replica run again with SIGCONT.
func (s *Stack) Resume(svc string, replica int) error {
	return s.signal(svc, replica, syscall.SIGCONT)
}

func (s *Stack) signal(svc string, replica int, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc(svc, replica)
	if !p.running() {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// Stop sends SIGTERM to a replica and waits for it to exit, at most StopTimeout (then it is
// killed). It returns an error unless the process exited with status 0 in time.
func (s *Stack) Stop(svc string, replica int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc(svc, replica).stop(StopTimeout)
}

// Restart starts a stopped or killed replica again with the same configuration and waits
// until it is ready. A running replica is stopped first. On failure it fails the test of a
// Stack made by Start, and panics for one made by StartWith (use RestartContext there).
func (s *Stack) Restart(svc string, replica int) {
	if err := s.RestartContext(context.Background(), svc, replica); err != nil {
		if s.tb != nil {
			s.tb.Helper()
			s.tb.Fatalf("restart %s-%d: %v", svc, replica, err)
		}
		panic(err)
	}
}

// RestartContext is Restart returning its error.
func (s *Stack) RestartContext(ctx context.Context, svc string, replica int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc(svc, replica)
	if p.running() {
		_ = p.stop(StopTimeout)
	}
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, ReadyTimeout)
}

// Launch starts a stopped or killed replica again without waiting for it to be ready: for a
// replica that cannot be ready yet (a broker alarm blocks its publishing) but must work.
func (s *Stack) Launch(svc string, replica int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc(svc, replica)
	if p.running() {
		return fmt.Errorf("%s is running", p.name)
	}
	return p.start()
}

// LogTails returns the last n lines of every process log, headed by the process name.
func (s *Stack) LogTails(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, svc := range Services {
		for _, p := range s.procs[svc] {
			fmt.Fprintf(&b, "==== %s (%s) ====\n%s\n", p.name, p.logPath, tail(p.logPath, n))
		}
	}
	return b.String()
}

// proc returns a replica; the caller holds s.mu, which guards s.procs against StartReplica.
func (s *Stack) proc(svc string, replica int) *process {
	ps, ok := s.procs[svc]
	if !ok || replica < 0 || replica >= len(ps) {
		panic(fmt.Sprintf("stack: no replica %d of %q", replica, svc))
	}
	return ps[replica]
}

// plan picks every port and builds each process's environment.
func (s *Stack) plan(bin string, opts Options) error {
	s.opts, s.taken = opts, map[string]bool{}
	for _, svc := range Services {
		for r := range opts.Replicas {
			p, err := s.planProcess(svc, r, bin)
			if err != nil {
				return err
			}
			s.procs[svc] = append(s.procs[svc], p)
		}
	}
	s.OrderGRPC = s.procs["order"][0].addrs["grpc"]
	s.OrderHTTP = s.procs["order"][0].addrs["http"]
	s.InventoryGRPC = s.procs["inventory"][0].addrs["grpc"]
	return nil
}

// planProcess picks the ports of replica r of svc and builds its environment.
func (s *Stack) planProcess(svc string, r int, bin string) (*process, error) {
	opts := s.opts
	// Each process lists every node, starting from a node of its own, so that the
	// connections spread over the cluster and each fails over to the next node.
	first := s.placed % len(s.nodeURLs)
	s.placed++
	amqpURL := strings.Join(append(slices.Clone(s.nodeURLs[first:]), s.nodeURLs[:first]...), ",")
	names := []string{"ops"}
	switch svc {
	case "order":
		names = append(names, "grpc", "http")
	case "inventory":
		names = append(names, "grpc")
	}
	addrs := map[string]string{}
	for _, n := range names {
		a, err := freeAddr(s.taken)
		if err != nil {
			return nil, err
		}
		addrs[n] = a
	}
	up := strings.ToUpper(svc)
	env := map[string]string{
		"AMQP_URL":           withParams(via(amqpURL, opts.BrokerVia), opts.AMQPParams),
		"LOG_LEVEL":          "info",
		up + "_DATABASE_URL": withParams(via(s.DatabaseURLs[svc], opts.PostgresVia), opts.DatabaseParams),
		up + "_OPS_ADDR":     addrs["ops"],
		"GOTRACEBACK":        "all",
	}
	if a, ok := addrs["grpc"]; ok {
		env[up+"_GRPC_ADDR"] = a
	}
	if a, ok := addrs["http"]; ok {
		env[up+"_HTTP_ADDR"] = a
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	name := fmt.Sprintf("%s-%d", svc, r)
	return &process{
		name:    name,
		bin:     filepath.Join(bin, svc),
		env:     env,
		opsAddr: addrs["ops"],
		addrs:   addrs,
		logPath: filepath.Join(s.logDir, name+".log"),
	}, nil
}

// startAll starts every process at once (each migrates its own database, so they do not
// depend on each other) and waits until all are ready.
func (s *Stack) startAll(ctx context.Context) error {
	var all []*process
	for _, svc := range Services {
		all = append(all, s.procs[svc]...)
	}
	for _, p := range all {
		if err := p.start(); err != nil {
			return err
		}
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, p := range all {
		wg.Go(func() { errs[i] = p.waitReady(ctx, ReadyTimeout) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\n%s", err, s.LogTails(20))
	}
	return nil
}

// stopAll SIGTERMs every running process at once and SIGKILLs those still running after
// killAfter.
func (s *Stack) stopAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var wg sync.WaitGroup
	for _, svc := range Services {
		for _, p := range s.procs[svc] {
			if p.running() {
				wg.Go(func() { _ = p.stop(killAfter) })
			}
		}
	}
	wg.Wait()
	return nil
}

func (s *Stack) createVHost(ctx context.Context, b *Broker) error {
	if b == nil {
		amqpURL, drop, err := testenv.NewVHost(ctx, "stack")
		if err != nil {
			return err
		}
		s.teardown = append(s.teardown, drop)
		s.AMQPURL, s.nodeURLs = amqpURL, []string{amqpURL}
		return nil
	}
	if len(b.AMQPURLs) == 0 {
		return errors.New("broker without nodes")
	}
	amqpURL, drop, err := testenv.NewVHostOn(ctx, b.ManagementURL, b.AMQPURLs[0], "stack")
	if err != nil {
		return err
	}
	s.teardown = append(s.teardown, drop)
	if s.nodeURLs, err = b.urls(amqpURL); err != nil {
		return err
	}
	s.AMQPURL = strings.Join(s.nodeURLs, ",")
	return nil
}

func (s *Stack) createDatabase(ctx context.Context, server, svc string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	name := testenv.Name("test_stack_" + svc)
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	if err := database.Create(ctx, cfg); err != nil {
		return "", err
	}
	s.teardown = append(s.teardown, func() error { return testenv.DropDatabaseOn(server, name) })
	return u.String(), nil
}

// via returns the URLs in u (comma-separated) with their host:port replaced by addr, or u when
// addr is empty.
func via(u, addr string) string {
	if addr == "" {
		return u
	}
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if pu, err := url.Parse(p); err == nil {
			pu.Host = addr
			parts[i] = pu.String()
		}
	}
	return strings.Join(parts, ",")
}

// withParams adds the query parameters params ("a=1&b=2") to the URL u.
func withParams(u, params string) string {
	if params == "" {
		return u
	}
	if strings.Contains(u, "?") {
		return u + "&" + params
	}
	return u + "?" + params
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago and is not in taken
// (the kernel may hand out a just-closed port again), and adds it to taken.
func freeAddr(taken map[string]bool) (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("pick a free port: %w", err)
		}
		a := l.Addr().String()
		l.Close()
		if !taken[a] {
			taken[a] = true
			return a, nil
		}
	}
	return "", errors.New("pick a free port: none left")
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
