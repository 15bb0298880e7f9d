package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one replica of one service; it can be started again after it exited.
type process struct {
	name    string
	bin     string
	env     map[string]string
	opsAddr string
	addrs   map[string]string
	logPath string

	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	exitErr error         // cmd.Wait's result, set before done is closed
}

// ownEnv reports whether an inherited variable configures the services, so that a developer's
// shell never leaks into a stack.
func ownEnv(kv string) bool {
	for _, p := range []string{"ORDER_", "PAYMENT_", "INVENTORY_", "SHIPPING_", "AMQP_URL=", "LOG_LEVEL="} {
		if strings.HasPrefix(kv, p) {
			return true
		}
	}
	return false
}

func (p *process) start() error {
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	defer log.Close() // the child has its own descriptor once started
	fmt.Fprintf(log, "---- stack: starting %s at %s ----\n", p.name, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(p.bin)
	for _, kv := range os.Environ() {
		if !ownEnv(kv) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) {
		p.exitErr = cmd.Wait()
		close(done)
	}(p.done)
	return nil
}

func (p *process) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *process) kill() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to timeout for a clean exit, killing the process after it.
func (p *process) stop(timeout time.Duration) error {
	if !p.running() {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	// A paused process (Pause) acts on SIGTERM only once it runs again.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, timeout)
	}
	if p.exitErr != nil {
		return fmt.Errorf("%s exited after SIGTERM: %w", p.name, p.exitErr)
	}
	return nil
}

// waitReady polls the process's /readyz until it answers 200, the process exits or timeout passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.opsAddr+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v: %s", p.name, p.exitErr, strings.TrimSpace(tail(p.logPath, 1)))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %s", p.name, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
