//go:build cluster

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

const clusterSize = 3

// TestClusterRabbitMQ runs two replicas of every service on a RabbitMQ cluster of three scratch
// nodes, each replica connected to a node of its own turn, and kills -9 the node that leads most
// of the saga's quorum queues mid-stream. The survivors elect new leaders, the services that lost
// their node reconnect to another one, and the killed node restarts and rejoins: no accepted order
// is lost or done twice.
func TestClusterRabbitMQ(t *testing.T) {
	keepMachineBroker(t)
	nodes := startCluster(t)
	e := start(t, stack.Options{Replicas: 2, Broker: brokerOf(nodes...)})
	vhost, err := vhostPath(e.stack.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	// The services declared the queues after the three nodes had joined: each has a member on
	// every node (quorum queues' initial group size is the whole cluster).
	waitReplicated(t, nodes[0], vhost, nodes)

	res := e.stream(streamOptions{Orders: 600, Duration: 30 * time.Second, FaultAt: 8 * time.Second}, func(ctx context.Context) {
		if err := crashLeader(ctx, t, nodes, vhost); err != nil {
			t.Error(err)
		}
	})
	e.verify(res, 0)
	waitReplicated(t, nodes[0], vhost, nodes)
	if out, code := e.ordersctl("audit"); code != 0 || !strings.Contains(out, "no violations") {
		t.Errorf("ordersctl audit over the cluster: exit %d\n%s", code, out)
	}
}

// crashLeader kills the node that leads most of the saga's queues, waits a while with two
// nodes, then starts it again and waits until it is back in the cluster.
func crashLeader(ctx context.Context, t *testing.T, nodes []*rabbitNode, vhost string) error {
	leaders, err := queueLeaders(ctx, nodes[0], vhost)
	if err != nil {
		return fmt.Errorf("queue leaders: %w", err)
	}
	victim := nodes[0]
	for _, n := range nodes {
		if leaders[n.nodename()] > leaders[victim.nodename()] {
			victim = n
		}
	}
	before, err := connections(ctx, nodes[0], vhost)
	if err != nil {
		return fmt.Errorf("connections: %w", err)
	}
	total := countAll(before)
	if before[victim.nodename()] == 0 {
		return fmt.Errorf("no service is connected to %s: %v", victim.name, before)
	}
	if err := victim.crashErr(); err != nil {
		return err
	}
	t.Logf("killed %s, leader of %d of the saga's queues (leaders: %v), with %d of the %d connections (%v)",
		victim.name, leaders[victim.nodename()], leaders, before[victim.nodename()], total, before)
	survivor := nodes[0]
	if survivor == victim {
		survivor = nodes[1]
	}
	// Every connection the node took down comes back on the other two.
	began := time.Now()
	for {
		after, err := connections(ctx, survivor, vhost)
		if err == nil && after[victim.nodename()] == 0 && after[survivor.nodename()] > 0 && countAll(after) == total {
			t.Logf("all %d connections back on the survivors within %s: %v", total, time.Since(began).Round(time.Millisecond), after)
			break
		}
		if time.Since(began) > time.Minute {
			return fmt.Errorf("connections a minute after the crash: %v (%v), want %d on the survivors", after, err, total)
		}
		pause(ctx, 250*time.Millisecond)
	}
	pause(ctx, 5*time.Second)
	if after, err := queueLeaders(ctx, survivor, vhost); err == nil {
		t.Logf("leaders with %s down: %v", victim.name, after)
	}
	began = time.Now()
	if err := victim.startErr(); err != nil {
		return err
	}
	if err := waitRunning(ctx, survivor, clusterSize); err != nil {
		return err
	}
	t.Logf("%s restarted and rejoined in %s", victim.name, time.Since(began).Round(time.Millisecond))
	return nil
}

// startCluster boots three scratch nodes at once and joins the second and third to the first,
// before any queue exists.
func startCluster(t *testing.T) []*rabbitNode {
	t.Helper()
	return startClusterOf(t, func(i int) *rabbitNode {
		return newRabbitNode(t, fmt.Sprintf("ordersaga-c%d", i+1), i+1)
	})
}

// startClusterOf is startCluster with nodes made by node (0, 1, 2).
func startClusterOf(t *testing.T, node func(i int) *rabbitNode) []*rabbitNode {
	t.Helper()
	began := time.Now()
	nodes := make([]*rabbitNode, clusterSize)
	for i := range nodes {
		nodes[i] = node(i)
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.startErr() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		for _, args := range [][]string{{"stop_app"}, {"reset"}, {"join_cluster", nodes[0].nodename()}, {"start_app"}} {
			if _, err := n.ctl(args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), nodeBootTimeout)
	defer cancel()
	if err := waitRunning(ctx, nodes[0], clusterSize); err != nil {
		t.Fatal(err)
	}
	t.Logf("RabbitMQ cluster of %d nodes up in %s", clusterSize, time.Since(began).Round(time.Millisecond))
	return nodes
}

// waitRunning waits until via sees want nodes of its cluster running and its own management
// API answers.
func waitRunning(ctx context.Context, via *rabbitNode, want int) error {
	ctx, cancel := context.WithTimeout(ctx, nodeBootTimeout)
	defer cancel()
	var running []string
	var err error
	for {
		if running, err = via.runningNodes(ctx); err == nil && len(running) == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %d nodes running (%v, %v), want %d", len(running), running, err, want)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// connections counts the client connections to the vhost by the node they are on.
func connections(ctx context.Context, via *rabbitNode, vhost string) (map[string]int, error) {
	var conns []struct {
		Node string `json:"node"`
	}
	if err := via.api(ctx, http.MethodGet, "/api/vhosts/"+vhost+"/connections", nil, &conns); err != nil {
		return nil, err
	}
	byNode := map[string]int{}
	for _, c := range conns {
		byNode[c.Node]++
	}
	return byNode, nil
}

// countAll adds up the counts of every node.
func countAll(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// quorumQueue is what the management API says of a quorum queue's replicas.
type quorumQueue struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Leader  string   `json:"leader"`
	Members []string `json:"members"`
	Online  []string `json:"online"`
}

func queues(ctx context.Context, via *rabbitNode, vhost string) ([]quorumQueue, error) {
	var qs []quorumQueue
	if err := via.api(ctx, http.MethodGet, "/api/queues/"+vhost, nil, &qs); err != nil {
		return nil, err
	}
	return qs, nil
}

// queueLeaders counts the saga's queues (dead-letter queues aside) by the node that leads them.
func queueLeaders(ctx context.Context, via *rabbitNode, vhost string) (map[string]int, error) {
	qs, err := queues(ctx, via, vhost)
	if err != nil {
		return nil, err
	}
	leaders := map[string]int{}
	for _, q := range qs {
		if !strings.HasSuffix(q.Name, ".dlq") {
			leaders[q.Leader]++
		}
	}
	return leaders, nil
}

// waitReplicated waits until every queue of the vhost is a quorum queue with an online member
// on each node.
func waitReplicated(t *testing.T, via *rabbitNode, vhost string, nodes []*rabbitNode) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.nodename())
	}
	slices.Sort(want)
	deadline := time.Now().Add(time.Minute)
	for {
		why := ""
		qs, err := queues(t.Context(), via, vhost)
		switch {
		case err != nil:
			why = err.Error()
		case len(qs) == 0:
			why = "no queues"
		}
		for _, q := range qs {
			members, online := slices.Sorted(slices.Values(q.Members)), slices.Sorted(slices.Values(q.Online))
			if q.Type != "quorum" || !slices.Equal(members, want) || !slices.Equal(online, want) {
				why = fmt.Sprintf("%s: %s, members %v, online %v", q.Name, q.Type, members, online)
				break
			}
		}
		if why == "" {
			t.Logf("%d queues, each with an online member on every node", len(qs))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues not replicated on %v: %s", want, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
