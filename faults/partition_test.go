//go:build cluster

package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// The partition test's network: a bridge in the machine's namespace and, for each node, a
// namespace of its own joined to the bridge by a veth pair. Nothing but this test uses the
// subnet, the bridge, the namespaces or the links, and all are removed at the end, also on
// failure, and before the test when an earlier run was killed.
const (
	partitionSubnet = "10.213.57" // /24: the bridge .1 (the services' side), node i .1i
	partitionBridge = "osaga-br"

	// partitionNetTick is the nodes' net_ticktime: a node that does not answer is declared down
	// by its peers, and the peers by it, 10–12.5 s after the link went. (RabbitMQ's default is
	// 60 s; the test shortens it to stay short.)
	partitionNetTick = 10 * time.Second
	// partitionCut is how long the node stays cut off: three net ticks.
	partitionCut = 3 * partitionNetTick
	// partitionHeartbeat is the services' AMQP heartbeat in this test (?heartbeat=3): a client
	// of the cut-off node finds its connection dead after three missed beats, 9 s, and redials
	// another node. With the default 10 s it takes up to 30 s.
	partitionHeartbeat = 3
	// partitionMoveBound bounds the time from the cut until every connection the cut-off node
	// had is back on the other two: three missed heartbeats, a redial that tries the cut-off
	// node first (5 s dial timeout) and a backoff of at most 5 s, on a loaded machine.
	partitionMoveBound = 40 * time.Second
	// partitionRejoinBound bounds the time from the heal until the node runs in the cluster
	// again: it pings its peers every second while paused, then starts its application.
	partitionRejoinBound = 60 * time.Second
	// partitionReadyBound bounds the time from the heal until every replica answers /readyz
	// 200 again by itself.
	partitionReadyBound = 30 * time.Second
)

// nodeNet is the partition test's network of namespaces.
type nodeNet struct {
	t     *testing.T
	links []nodeLink
}

// nodeLink is a node's namespace, the machine's end of its veth pair (the other end is eth0 in
// the namespace) and its address and host name.
type nodeLink struct {
	ns, veth, ip, host string
}

// newNodeNet builds the bridge and size namespaces, after removing whatever an earlier run left.
func newNodeNet(t *testing.T, size int) *nodeNet {
	t.Helper()
	nn := &nodeNet{t: t}
	for i := range size {
		nn.links = append(nn.links, nodeLink{
			ns:   fmt.Sprintf("ordersaga-p%d", i+1),
			veth: fmt.Sprintf("osaga-p%d", i+1),
			ip:   fmt.Sprintf("%s.%d", partitionSubnet, 11+i),
			host: fmt.Sprintf("ordersaga-p%d", i+1),
		})
	}
	nn.remove()
	t.Cleanup(func() {
		if err := nn.remove(); err != nil {
			t.Errorf("network cleanup: %v", err)
		}
	})
	cmds := [][]string{
		{"link", "add", partitionBridge, "type", "bridge"},
		{"addr", "add", partitionSubnet + ".1/24", "dev", partitionBridge},
		{"link", "set", partitionBridge, "up"},
	}
	for _, l := range nn.links {
		cmds = append(cmds,
			[]string{"netns", "add", l.ns},
			[]string{"link", "add", l.veth, "type", "veth", "peer", "name", "eth0", "netns", l.ns},
			[]string{"link", "set", l.veth, "master", partitionBridge},
			[]string{"link", "set", l.veth, "up"},
			[]string{"-n", l.ns, "addr", "add", l.ip + "/24", "dev", "eth0"},
			[]string{"-n", l.ns, "link", "set", "eth0", "up"},
			[]string{"-n", l.ns, "link", "set", "lo", "up"},
		)
	}
	for _, c := range cmds {
		if err := ipCmd(c...); err != nil {
			t.Fatal(err)
		}
	}
	return nn
}

// place is where node i runs: in its namespace, on its address, named after its namespace,
// with the partition handling and net tick of the test.
func (nn *nodeNet) place(i int) nodePlace {
	var hosts strings.Builder
	for _, l := range nn.links {
		fmt.Fprintf(&hosts, "{host, {%s}, [%q]}.\n", strings.ReplaceAll(l.ip, ".", ","), l.host)
	}
	hosts.WriteString("{lookup, [file, native]}.\n")
	l := nn.links[i]
	return nodePlace{
		netns: l.ns, ip: l.ip, host: l.host, hosts: hosts.String(),
		conf: "loopback_users = none\n" + // the services connect from the bridge's address, not the loopback
			"cluster_partition_handling = pause_minority\n" +
			"net_ticktime = " + strconv.Itoa(int(partitionNetTick.Seconds())) + "\n",
	}
}

// cut takes the machine's end of node i's link down: the node can reach nothing and nothing
// can reach it, neither its peers nor the services.
func (nn *nodeNet) cut(i int) error { return ipCmd("link", "set", nn.links[i].veth, "down") }

// heal brings node i's link up again.
func (nn *nodeNet) heal(i int) error { return ipCmd("link", "set", nn.links[i].veth, "up") }

// remove kills whatever still runs in the namespaces (epmd, which outlives the nodes), one
// process id at a time, and deletes the namespaces, the veth pairs and the bridge.
func (nn *nodeNet) remove() error {
	var errs []error
	for _, l := range nn.links {
		if out, err := exec.Command("ip", "netns", "pids", l.ns).Output(); err == nil {
			var pids []int
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			for _, pid := range pids {
				waitGone(pid, 30*time.Second)
			}
			if err := ipCmd("netns", "del", l.ns); err != nil {
				errs = append(errs, err)
			}
			// The namespace takes its end of the veth pair along, and the pair goes with it,
			// a moment later.
			for deadline := time.Now().Add(5 * time.Second); linkExists(l.veth) && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if linkExists(l.veth) {
			if err := ipCmd("link", "del", l.veth); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if linkExists(partitionBridge) {
		if err := ipCmd("link", "del", partitionBridge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// TestClusterRabbitMQPartition runs two replicas of every service on a RabbitMQ cluster of
// three scratch nodes, each node in a network namespace of its own, and cuts the node leading
// most of the saga's queues off from everything (its peers and the services) for three net
// ticks mid-stream. The two others keep the saga going, the cut-off node pauses itself
// (pause_minority), the services connected to it move to the other two, and once the link is
// back the node rejoins by itself: no accepted order is lost or done twice, and every service
// is ready again by itself within partitionReadyBound.
func TestClusterRabbitMQPartition(t *testing.T) {
	keepMachineBroker(t)
	nn := newNodeNet(t, clusterSize)
	nodes := startClusterOf(t, func(i int) *rabbitNode {
		return newRabbitNodeAt(t, fmt.Sprintf("ordersaga-p%d", i+1), 11+i, nn.place(i))
	})
	e := start(t, stack.Options{Replicas: 2, Broker: brokerOf(nodes...), AMQPParams: fmt.Sprintf("heartbeat=%d", partitionHeartbeat)})
	vhost, err := vhostPath(e.stack.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	waitReplicated(t, nodes[0], vhost, nodes)

	var p partitionResult
	res := e.stream(streamOptions{Orders: 1000, Duration: 50 * time.Second, FaultAt: 8 * time.Second, RecoverWithin: time.Minute},
		func(ctx context.Context) {
			var err error
			if p, err = partition(ctx, t, e, nn, nodes, vhost); err != nil {
				t.Error(err)
			}
		})
	e.verify(res, 0)
	if p.victim == nil {
		return // partition failed and said why
	}
	// Every queue has its member on the node that was cut off online again, as the node
	// itself sees it, and no node remembers a partition.
	waitReplicated(t, p.victim, vhost, nodes)
	for _, n := range nodes {
		if parts, err := partitions(t.Context(), n); err != nil || len(parts) > 0 {
			t.Errorf("%s after the heal: partitions %v (%v), want none", n.name, parts, err)
		}
	}
	if out, code := e.ordersctl("audit"); code != 0 || !strings.Contains(out, "no violations") {
		t.Errorf("ordersctl audit over the cluster: exit %d\n%s", code, out)
	}
	t.Logf("PARTITION orders=%d completed_during_cut=%d completed_after_down=%d moved_over=%.1fs rejoined=%.1fs restarted=%v ready=%.1fs recover=%.1fs",
		len(res.Accepted), p.completedCut, p.completedDown, p.moved.Seconds(), p.rejoined.Seconds(), p.restarted, p.ready.Seconds(), res.Recover.Seconds())
}

// partitionResult is what partition measured.
type partitionResult struct {
	victim        *rabbitNode
	completedCut  int           // orders that became terminal while the node was cut off
	completedDown int           // of those, after the majority had declared the node down
	moved         time.Duration // from the cut until every connection was on the other two nodes
	rejoined      time.Duration // from the heal until the node ran in the cluster again
	ready         time.Duration // from the heal (or the node's restart) until every replica was ready
	restarted     bool          // the node did not rejoin by itself and was restarted
}

// partition cuts the node that leads most of the saga's queues off for partitionCut, checks
// that the other two carry on and that the node pauses, heals the link and waits until the
// node has rejoined and every service is ready.
func partition(ctx context.Context, t *testing.T, e *env, nn *nodeNet, nodes []*rabbitNode, vhost string) (partitionResult, error) {
	var r partitionResult
	leaders, err := queueLeaders(ctx, nodes[0], vhost)
	if err != nil {
		return r, fmt.Errorf("queue leaders: %w", err)
	}
	vi := 0
	for i, n := range nodes {
		if leaders[n.nodename()] > leaders[nodes[vi].nodename()] {
			vi = i
		}
	}
	victim := nodes[vi]
	via := nodes[(vi+1)%len(nodes)] // a node of the majority
	// The services' connections, counted on their side: the management API's list comes from
	// a cache that a query held up by the unreachable node keeps stale for a long while.
	before, err := amqpClients(nodes)
	if err != nil {
		return r, fmt.Errorf("connections: %w", err)
	}
	total := countAll(before)
	if before[victim.nodename()] == 0 {
		return r, fmt.Errorf("no service is connected to %s: %v", victim.name, before)
	}
	doneBefore, err := e.terminalCount(ctx)
	if err != nil {
		return r, err
	}
	if err := nn.cut(vi); err != nil {
		return r, err
	}
	cut := time.Now()
	r.victim = victim
	// Heal the link whatever happens below, so that cleanup and the checks after the stream
	// find a cluster of three.
	healed := false
	heal := func() error {
		if healed {
			return nil
		}
		healed = true
		return nn.heal(vi)
	}
	defer func() {
		if err := heal(); err != nil {
			t.Error(err)
		}
	}()
	t.Logf("cut %s off (leader of %d of the saga's queues: %v) with %d of the %d connections (%v)",
		victim.name, leaders[victim.nodename()], leaders, before[victim.nodename()], total, before)

	// The majority declares the node down after a net tick, and carries on without it.
	var down time.Time
	doneDown := 0
	var lastConns map[string]int
	var lastErr error
	for {
		if down.IsZero() {
			if running, err := via.runningNodes(ctx); err == nil && len(running) == clusterSize-1 {
				down = time.Now()
				t.Logf("%s sees %v running %s after the cut", via.name, running, down.Sub(cut).Round(time.Millisecond))
				if doneDown, err = e.terminalCount(ctx); err != nil {
					return r, err
				}
			}
		}
		// Every connection the cut-off node had is back, on the other two: no client holds an
		// established connection to it any more (a client that gave one up cannot send its
		// FIN through the cut, so its socket leaves the established state at once).
		if r.moved == 0 {
			after, err := amqpClients(nodes)
			lastConns, lastErr = after, err
			if err == nil && after[victim.nodename()] == 0 && countAll(after) == total {
				r.moved = time.Since(cut)
				t.Logf("all %d connections on the majority %s after the cut: %v", total, r.moved.Round(time.Millisecond), after)
			}
		}
		if !down.IsZero() && r.moved > 0 {
			break
		}
		if time.Since(cut) > partitionMoveBound {
			return r, fmt.Errorf("%s after the cut: majority saw the node down: %v, connections moved: %v (%v, %v; want %d on the majority)",
				partitionMoveBound, !down.IsZero(), r.moved > 0, lastConns, lastErr, total)
		}
		pause(ctx, 250*time.Millisecond)
	}
	// The cut-off node, alone, found itself in a minority and paused: its RabbitMQ
	// application stopped, so it serves no client until it sees a majority again.
	paused := false
	for !paused && time.Since(cut) < partitionCut {
		out, err := victim.eval(ctx, "rabbit:is_running().")
		paused = err == nil && strings.TrimSpace(out) == "false"
		if paused {
			t.Logf("%s found paused (pause_minority: its application stopped) %s after the cut", victim.name, time.Since(cut).Round(time.Millisecond))
			break
		}
		pause(ctx, 2*time.Second)
	}
	if !paused {
		t.Errorf("%s did not pause within %s of the cut", victim.name, partitionCut)
	}
	pause(ctx, partitionCut-time.Since(cut))
	doneHeal, err := e.terminalCount(ctx)
	if err != nil {
		return r, err
	}
	r.completedCut, r.completedDown = doneHeal-doneBefore, doneHeal-doneDown
	t.Logf("%d orders completed while %s was cut off (%s), %d of them after the majority had declared it down",
		r.completedCut, victim.name, time.Since(cut).Round(time.Millisecond), r.completedDown)
	if r.completedDown == 0 {
		t.Errorf("no order completed on the majority while %s was cut off", victim.name)
	}

	if err := heal(); err != nil {
		return r, err
	}
	healedAt := time.Now()
	if err := rejoin(ctx, via, victim); err != nil {
		// RabbitMQ 3.10.8 on Erlang/OTP 25 (Debian's): now and then the paused node, once it
		// sees the majority again, hangs in its restart after its global name server's sync
		// hung ("Faking nodedown/nodeup" in its log, then nothing): its peers count it running,
		// its listeners stay closed. It does not recover by itself; the operator's remedy is
		// to restart the node, which the test does, says, and reports (restarted=true). See
		// docs/scaling.md.
		r.restarted = true
		t.Logf("KNOWN ISSUE: %s did not rejoin by itself within %s of the heal (%v); restarting it as an operator would", victim.name, partitionRejoinBound, err)
		victim.logTail(t, 30)
		if err := victim.crashErr(); err != nil {
			return r, err
		}
		if err := victim.startErr(); err != nil {
			return r, err
		}
		if err := rejoin(ctx, via, victim); err != nil {
			return r, fmt.Errorf("restarted after the heal: %w", err)
		}
	}
	r.rejoined = time.Since(healedAt)
	t.Logf("%s rejoined %s after the heal (restarted: %v)", victim.name, r.rejoined.Round(time.Millisecond), r.restarted)
	since := healedAt
	if r.restarted {
		since = time.Now() // the services' bound counts from the node's restart
	}
	r.ready = e.waitReady(ctx, since, partitionReadyBound)
	return r, nil
}

// rejoin waits at most partitionRejoinBound until a node of the majority and the node that was
// cut off both see the whole cluster running.
func rejoin(ctx context.Context, via, victim *rabbitNode) error {
	ctx, cancel := context.WithTimeout(ctx, partitionRejoinBound)
	defer cancel()
	if err := waitRunning(ctx, via, clusterSize); err != nil {
		return fmt.Errorf("as %s sees it: %w", via.name, err)
	}
	if err := waitRunning(ctx, victim, clusterSize); err != nil {
		return fmt.Errorf("as %s sees it: %w", victim.name, err)
	}
	return nil
}

// terminalCount counts the orders in a terminal status.
func (e *env) terminalCount(ctx context.Context) (int, error) {
	orders, err := e.listOrders(ctx)
	if err != nil {
		return 0, fmt.Errorf("list orders: %w", err)
	}
	n := 0
	for _, o := range orders {
		if terminal[o.GetStatus()] {
			n++
		}
	}
	return n, nil
}

// waitReady waits until every replica answers /readyz 200, failing the test unless that
// happens within bound of since; it returns how long after since it happened.
func (e *env) waitReady(ctx context.Context, since time.Time, bound time.Duration) time.Duration {
	for _, svc := range stack.Services {
		for i := range e.stack.Replicas() {
			for {
				code, err := opsStatus(ctx, e.stack.OpsAddr(svc, i), "/readyz")
				if err == nil && code == http.StatusOK {
					break
				}
				if time.Since(since) > bound || ctx.Err() != nil {
					e.t.Errorf("%s-%d not ready %s after the broker was whole again (%d, %v), want at most %s", svc, i,
						time.Since(since).Round(time.Millisecond), code, err, bound)
					return time.Since(since)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	took := time.Since(since)
	e.t.Logf("every service ready %s after the broker was whole again", took.Round(time.Millisecond))
	return took
}

// opsStatus returns the status code of a GET of path on an ops server.
func opsStatus(ctx context.Context, addr, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// eval evaluates an Erlang expression on the node once (no retry) and returns what it printed.
func (n *rabbitNode) eval(ctx context.Context, expr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := n.command(ctx, rabbitCtl, "-q", "-n", n.nodename(), "eval", expr).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("eval %s on %s: %w\n%s", expr, n.name, err, out)
	}
	return string(out), nil
}

// partitions lists the nodes that node n says it was partitioned from.
func partitions(ctx context.Context, n *rabbitNode) ([]string, error) {
	var nodes []struct {
		Name       string   `json:"name"`
		Partitions []string `json:"partitions"`
	}
	if err := n.api(ctx, http.MethodGet, "/api/nodes", nil, &nodes); err != nil {
		return nil, err
	}
	var out []string
	for _, node := range nodes {
		for _, p := range node.Partitions {
			out = append(out, node.Name+"↔"+p)
		}
	}
	return out, nil
}

// amqpClients counts the established TCP connections from the machine's network namespace (the
// services', the test's) to each node's AMQP port, by node name, from /proc/net/tcp.
func amqpClients(nodes []*rabbitNode) (map[string]int, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	byAddr := map[string]string{} // remote address as /proc/net/tcp writes it → node name
	for _, n := range nodes {
		ip := net.ParseIP(n.at.ip).To4()
		if ip == nil {
			return nil, fmt.Errorf("%s: not an IPv4 address: %s", n.name, n.at.ip)
		}
		// The address in network byte order read as a little-endian word, then the port.
		byAddr[fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], n.amqpPort)] = n.nodename()
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		if node, ok := byAddr[f[2]]; ok {
			counts[node]++
		}
	}
	return counts, nil
}
