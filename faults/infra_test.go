//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

// TestFaultRabbitMQRestart stops the broker's application (every AMQP connection of every
// service drops) for a few seconds mid-stream and starts it again; the services reconnect by
// themselves and no event is lost.
func TestFaultRabbitMQRestart(t *testing.T) {
	e := start(t, stack.Options{})
	u, err := url.Parse(e.stack.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	var stopped atomic.Bool
	t.Cleanup(func() { // before the stack's own cleanup, which needs the broker
		if stopped.Load() {
			if err := rabbitmqctl("start_app"); err != nil {
				t.Errorf("start the broker again: %v", err)
			}
		}
	})
	res := e.stream(streamOptions{}, func(ctx context.Context) {
		stopped.Store(true)
		if err := rabbitmqctl("stop_app"); err != nil {
			t.Errorf("stop the broker: %v", err)
			return
		}
		t.Log("broker stopped")
		pause(ctx, 3*time.Second)
		if err := rabbitmqctl("start_app"); err != nil {
			t.Errorf("start the broker: %v", err)
			return
		}
		stopped.Store(false)
		if err := waitPort(ctx, u.Host, time.Minute); err != nil {
			t.Errorf("broker: %v", err)
			return
		}
		t.Log("broker started")
	})
	e.verify(res, 0)
}

// TestFaultPostgresRestart stops the PostgreSQL server (every service loses its database) for a
// few seconds mid-stream and starts it again; the services recover by themselves.
func TestFaultPostgresRestart(t *testing.T) {
	version := pgVersion(t)
	pg := func(action string, args ...string) error {
		cmd := exec.Command("pg_ctlcluster", append([]string{"--skip-systemctl-redirect", version, "main", action}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pg_ctlcluster %s: %w\n%s", action, err, out)
		}
		return nil
	}
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, stack.Options{})
	var stopped atomic.Bool
	t.Cleanup(func() { // before the stack's own cleanup, which drops the databases
		if stopped.Load() {
			if err := pg("start"); err != nil {
				t.Errorf("start PostgreSQL again: %v", err)
			}
		}
	})
	res := e.stream(streamOptions{}, func(ctx context.Context) {
		stopped.Store(true)
		if err := pg("stop", "-m", "fast"); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
			return
		}
		t.Log("PostgreSQL stopped")
		pause(ctx, 3*time.Second)
		if err := pg("start"); err != nil {
			t.Errorf("start PostgreSQL: %v", err)
			return
		}
		stopped.Store(false)
		if err := waitPort(ctx, u.Host, time.Minute); err != nil {
			t.Errorf("PostgreSQL: %v", err)
			return
		}
		t.Log("PostgreSQL started")
	})
	e.verify(res, 0)
}

// pgVersion returns the version of the machine's one PostgreSQL cluster, as pg_ctlcluster
// wants it.
func pgVersion(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		t.Skipf("no local PostgreSQL cluster to restart: %v", err)
	}
	var versions []string
	for _, e := range entries {
		if e.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) != 1 {
		t.Skipf("want one PostgreSQL cluster in /etc/postgresql, found %s", strings.Join(versions, ", "))
	}
	return versions[0]
}
