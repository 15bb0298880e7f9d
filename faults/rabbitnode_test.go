//go:build faults || cluster

package faults

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// The RabbitMQ installation the scratch nodes run from. The server script is started
// directly, not through Debian's wrapper, which insists on the rabbitmq user and its fixed
// directories.
const (
	rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	rabbitCtl    = "/usr/lib/rabbitmq/bin/rabbitmqctl"
	rabbitCookie = "/var/lib/rabbitmq/.erlang.cookie"
	rabbitBase   = "/tmp/ordersaga-rabbit" // every scratch node's directories live under it

	nodeBootTimeout = 90 * time.Second
)

// rabbitNode is a RabbitMQ node of the test's own beside the machine's broker (rabbit@localhost
// on 5672, 15672, 25672): its own node name, ports, configuration, data and logs. Scratch nodes
// share the machine's Erlang cookie only so that they can form a cluster among themselves; every
// CLI call names its node with -n.
type rabbitNode struct {
	name                         string // e.g. ordersaga-c1; the node is name@localhost
	amqpPort, mgmtPort, distPort int
	dir                          string
	at                           nodePlace

	cmd  *exec.Cmd
	done chan struct{} // closed when the server script has exited
}

// nodePlace says where a scratch node runs: by default on the loopback of the machine's own
// network namespace, its node name's host part localhost. A node of a partition test runs in a
// network namespace of its own (netns), listens on that namespace's address (ip) for AMQP, the
// management API, Erlang distribution and epmd, and is named name@host; hosts is the Erlang
// resolver configuration (ERL_INETRC) that resolves every node's host to its address, and conf
// is added to its rabbitmq.conf.
type nodePlace struct {
	netns, ip, host string
	hosts           string
	conf            string
}

// newRabbitNode prepares node name on the ports 5700+slot, 15700+slot and 25700+slot, clear of
// the machine's broker and of the CLI tools' 35672–35682. Whatever a previous run of the same
// node left (a process, data) is removed first, and everything is removed again at cleanup.
func newRabbitNode(t *testing.T, name string, slot int) *rabbitNode {
	t.Helper()
	return newRabbitNodeAt(t, name, slot, nodePlace{})
}

// newRabbitNodeAt is newRabbitNode for a node placed as at says (see nodePlace).
func newRabbitNodeAt(t *testing.T, name string, slot int, at nodePlace) *rabbitNode {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("scratch RabbitMQ nodes run as root (they read %s)", rabbitCookie)
	}
	if at.ip == "" {
		at.ip = "127.0.0.1"
	}
	if at.host == "" {
		at.host = "localhost"
	}
	n := &rabbitNode{
		name:     name,
		amqpPort: 5700 + slot, mgmtPort: 15700 + slot, distPort: 25700 + slot,
		dir: filepath.Join(rabbitBase, name),
		at:  at,
	}
	n.reap(t)
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			n.logTail(t, 60)
		}
		n.reap(t)
		_ = os.Remove(rabbitBase) // once the last node's directory is gone
	})
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cookie, err := os.ReadFile(rabbitCookie)
	if err != nil {
		t.Fatalf("erlang cookie: %v", err)
	}
	conf := fmt.Sprintf("listeners.tcp.1 = %s:%d\nmanagement.tcp.ip = %s\nmanagement.tcp.port = %d\n", at.ip, n.amqpPort, at.ip, n.mgmtPort) + at.conf
	files := map[string]string{
		"home/.erlang.cookie": string(cookie),
		"rabbitmq.conf":       conf,
		"enabled_plugins":     "[rabbitmq_management].\n",
		"rabbitmq-env.conf":   "", // read instead of /etc/rabbitmq/rabbitmq-env.conf, which names the machine's node
	}
	if at.hosts != "" {
		files["inetrc"] = at.hosts
	}
	for path, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, path), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Erlang refuses a cookie that others may read.
	if err := os.Chmod(filepath.Join(n.dir, "home/.erlang.cookie"), 0o400); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *rabbitNode) nodename() string { return n.name + "@" + n.at.host }

func (n *rabbitNode) amqpURL() string {
	return fmt.Sprintf("amqp://guest:guest@%s:%d/", n.at.ip, n.amqpPort)
}

func (n *rabbitNode) managementURL() string {
	return fmt.Sprintf("http://guest:guest@%s:%d", n.at.ip, n.mgmtPort)
}

// command runs name with args in the node's network namespace, if it has one.
func (n *rabbitNode) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n.at.netns != "" {
		args = append([]string{"netns", "exec", n.at.netns, name}, args...)
		name = "ip"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = n.env()
	return cmd
}

// env is the server's and the CLI's environment: the inherited one without any RabbitMQ or
// Erlang setting, and the node's own.
func (n *rabbitNode) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "ERL_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	dist := strings.ReplaceAll(n.at.ip, ".", ",")
	if n.at.hosts != "" {
		env = append(env, "ERL_INETRC="+filepath.Join(n.dir, "inetrc"))
	}
	return append(env,
		"HOME="+filepath.Join(n.dir, "home"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(n.dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME="+n.nodename(),
		"RABBITMQ_NODE_IP_ADDRESS="+n.at.ip,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(n.dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {"+dist+"}",
		"ERL_EPMD_ADDRESS="+n.at.ip, // epmd adds the loopback itself
	)
}

// start runs the node's server and waits until its management API answers. On a node that was
// a cluster member before, that includes syncing with the members that are up.
func (n *rabbitNode) start(t *testing.T) {
	t.Helper()
	if err := n.startErr(); err != nil {
		t.Fatal(err)
	}
}

func (n *rabbitNode) startErr() error {
	for _, p := range []int{n.amqpPort, n.mgmtPort, n.distPort} {
		if portOpenOn(n.at.ip, p) {
			return fmt.Errorf("%s: port %d is taken by another process", n.name, p)
		}
	}
	out, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := n.command(context.Background(), rabbitServer)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the script and the VM, killed together
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(n.done)
	deadline := time.Now().Add(nodeBootTimeout)
	for {
		var overview struct {
			Node string `json:"node"`
		}
		if err := n.api(context.Background(), http.MethodGet, "/api/overview", nil, &overview); err == nil && overview.Node == n.nodename() {
			return nil
		}
		select {
		case <-n.done:
			return fmt.Errorf("%s exited while booting; see %s", n.name, filepath.Join(n.dir, "server.log"))
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not up within %s; see %s", n.name, nodeBootTimeout, n.dir)
		}
	}
}

// crashErr kills the node's Erlang VM with SIGKILL, as a machine that loses power would, and
// waits until it is gone.
func (n *rabbitNode) crashErr() error {
	pid, err := n.vmPID()
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", n.name, err)
	}
	select {
	case <-n.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s still running 30s after SIGKILL", n.name)
	}
}

// vmPID is the process id of the node's Erlang VM, which the server writes to its pid file.
func (n *rabbitNode) vmPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.dir, "pid"))
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// kill ends the node's process group, if it runs.
func (n *rabbitNode) kill() {
	if n.cmd == nil || n.done == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
	}
	// The script may die before its VM does.
	if pid, err := n.vmPID(); err == nil {
		waitGone(pid, 30*time.Second)
	}
}

// waitGone waits until process pid has exited (or is a zombie), at most timeout.
func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the parenthesized command name.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reap kills whatever process runs from the node's directory (a previous run's node, left
// behind when that run was killed), one process id at a time, and removes the directory.
func (n *rabbitNode) reap(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	mark := []byte(n.dir + "/")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, mark) {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		t.Logf("%s: killing process %d left by an earlier run", n.name, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		waitGone(pid, 30*time.Second)
	}
	if err := os.RemoveAll(n.dir); err != nil {
		t.Errorf("remove %s: %v", n.dir, err)
	}
}

// ctl runs rabbitmqctl against this node, retrying: the CLI fails now and then when another one
// runs at the same time on the machine ("Distribution failed").
func (n *rabbitNode) ctl(args ...string) (string, error) {
	var err error
	var out []byte
	for try := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := n.command(ctx, rabbitCtl, append([]string{"-q", "-n", n.nodename()}, args...)...)
		out, err = cmd.CombinedOutput()
		cancel()
		if err == nil {
			return string(out), nil
		}
		time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
	}
	return "", fmt.Errorf("rabbitmqctl -n %s %s: %w\n%s", n.nodename(), strings.Join(args, " "), err, out)
}

// api calls the node's management API and decodes its JSON answer into out (unless nil).
func (n *rabbitNode) api(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return testenv.ManagementOn(ctx, n.managementURL(), method, path, body, out)
}

// runningNodes lists the cluster's nodes that this node sees running.
func (n *rabbitNode) runningNodes(ctx context.Context) ([]string, error) {
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := n.api(ctx, http.MethodGet, "/api/nodes", nil, &nodes); err != nil {
		return nil, err
	}
	var running []string
	for _, node := range nodes {
		if node.Running {
			running = append(running, node.Name)
		}
	}
	slices.Sort(running)
	return running, nil
}

// brokerOf is a broker of the nodes given, as a stack takes it.
func brokerOf(nodes ...*rabbitNode) *stack.Broker {
	b := &stack.Broker{ManagementURL: nodes[0].managementURL()}
	for _, n := range nodes {
		b.AMQPURLs = append(b.AMQPURLs, n.amqpURL())
	}
	return b
}

// portOpen reports whether something listens on 127.0.0.1:port.
func portOpen(port int) bool { return portOpenOn("127.0.0.1", port) }

// portOpenOn reports whether something listens on ip:port.
func portOpenOn(ip string, port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// machineBroker describes the machine's own RabbitMQ node: its VM's process id, the nodes of
// its cluster and its alarms. The scratch nodes' tests compare it before and after, to show the
// machine's broker was left as it was.
func machineBroker(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, expr := range []string{"os:getpid().", "lists:sort(rabbit_nodes:all()).", "rabbit_alarm:get_alarms()."} {
		var out []byte
		var err error
		for try := range 6 {
			// Debian's wrapper runs the CLI as the rabbitmq user, with the machine node's cookie.
			out, err = exec.Command("rabbitmqctl", "-q", "-n", "rabbit@localhost", "eval", expr).CombinedOutput()
			if err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("the machine's broker: rabbitmqctl eval %s: %v\n%s", expr, err, out)
		}
		parts = append(parts, strings.TrimSpace(string(out)))
	}
	return strings.Join(parts, " ")
}

// keepMachineBroker fails the test unless the machine's broker, at the end, is as it was now.
func keepMachineBroker(t *testing.T) {
	t.Helper()
	before := machineBroker(t)
	t.Logf("the machine's broker: %s", before)
	t.Cleanup(func() {
		if after := machineBroker(t); after != before {
			t.Errorf("the machine's broker changed: %s before, %s after", before, after)
		}
	})
}

// vhostPath is the vhost of an AMQP URL (of its first node) as the management API's paths name it.
func vhostPath(amqpURL string) (string, error) {
	first, _, _ := strings.Cut(amqpURL, ",")
	u, err := url.Parse(first)
	if err != nil {
		return "", err
	}
	return url.PathEscape(strings.TrimPrefix(u.Path, "/")), nil
}

// logTail logs the last lines of the node's own log, as a failed test's last word on what the
// node did.
func (n *rabbitNode) logTail(t *testing.T, lines int) {
	t.Helper()
	path := filepath.Join(n.dir, "log", n.nodename()+".log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", n.name, err)
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("==== %s (last %d lines) ====\n%s", path, lines, strings.Join(all[max(0, len(all)-lines):], "\n"))
}
