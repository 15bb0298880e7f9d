package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The clients of other ecosystems (Prism, Chromium, Node) are installed by make web-tools:
// npm packages pinned by the lock files beside their package.json, Chromium by apt-get.

// repoFile returns the path of rel, relative to the repository's root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// needFile fails the test when the tool at path (relative to the root) is not installed.
func needFile(t *testing.T, rel string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("drives a client of another ecosystem against a running stack")
	}
	p := repoFile(t, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed: run make web-tools (%v)", rel, err)
	}
	return p
}

// freeLocalAddr returns a loopback address with a port free at the moment.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startTool starts a long-running tool in its own process group, its output collected, and
// stops the group when the test ends.
func startTool(t *testing.T, dir string, env []string, name string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return out
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, t *testing.T, addr string, out *syncBuffer) {
	t.Helper()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nothing listens on %s: %v\n%s", addr, err, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
