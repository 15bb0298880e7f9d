// Package testenv gives tests their own PostgreSQL database and RabbitMQ virtual host on the
// real servers of this machine, and removes them when the test ends.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordersaga/ordersaga/pkg/database"
)

// PostgresURL is the server tests use; TEST_POSTGRES_URL overrides it.
func PostgresURL() string {
	if v := os.Getenv("TEST_POSTGRES_URL"); v != "" {
		return v
	}
	return "postgres://postgres@localhost:5432/postgres?sslmode=disable"
}

// AMQPURL is the broker tests use; TEST_AMQP_URL overrides it.
func AMQPURL() string {
	if v := os.Getenv("TEST_AMQP_URL"); v != "" {
		return v
	}
	return "amqp://guest:guest@localhost:5672/"
}

// Name returns a fresh name with prefix, usable as a database or vhost name.
func Name(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// Needs skips t under -short, which runs only what needs no server: t needs what (PostgreSQL,
// RabbitMQ, the running services), and make test runs it. Every helper here that reaches a
// server calls it, so a test that uses them needs no check of its own.
func Needs(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: not under -short (make test runs it)", what)
	}
}

// DatabaseURL creates an empty database and returns its URL; it is dropped at cleanup.
func DatabaseURL(t testing.TB, prefix string) string {
	t.Helper()
	Needs(t, "PostgreSQL")
	name := Name("test_" + prefix)
	u, err := url.Parse(PostgresURL())
	if err != nil {
		t.Fatalf("parse postgres url: %v", err)
	}
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := database.Create(ctx, cfg); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := DropDatabase(name); err != nil {
			t.Error(err)
		}
	})
	return u.String()
}

// DropDatabase drops database name, retrying for up to a minute: the server may be restarting
// (fault tests restart it), and a database left behind would outlive the run.
func DropDatabase(name string) error { return DropDatabaseOn(PostgresURL(), name) }

// DropDatabaseOn is DropDatabase on the server of serverURL, which may name several hosts.
func DropDatabaseOn(serverURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, serverURL); err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("drop database %s: %w", name, err)
}

// Postgres creates a database, applies migrations and returns a pool on it. The pool is closed
// and the database dropped at cleanup.
func Postgres(t testing.TB, prefix string, migrations ...database.Migrations) *pgxpool.Pool {
	t.Helper()
	dbURL := DatabaseURL(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := database.Open(ctx, dbURL, Logger(t), migrations...)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop: cleanups run last-in first-out
	return pool
}

// VHost creates a RabbitMQ virtual host for the test and returns the AMQP URL that uses it, so
// that the saga's fixed exchange and queue names never meet another test's. The vhost and
// everything in it are deleted at cleanup.
func VHost(t testing.TB) string {
	t.Helper()
	Needs(t, "RabbitMQ")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	amqpURL, drop, err := NewVHost(ctx, "test")
	if err != nil {
		t.Fatalf("create vhost: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("delete vhost: %v", err)
		}
	})
	return amqpURL
}

// ManagementURL is the RabbitMQ management API; TEST_RABBITMQ_MANAGEMENT_URL overrides it.
func ManagementURL() string {
	if v := os.Getenv("TEST_RABBITMQ_MANAGEMENT_URL"); v != "" {
		return v
	}
	return "http://guest:guest@127.0.0.1:15672"
}

// NewVHost creates a virtual host named prefix_<random> through the management API, grants the
// AMQP user every permission on it, and returns its AMQP URL and a function that deletes it.
// The management API is used rather than rabbitmqctl, whose CLI nodes collide when many tests
// start at once.
func NewVHost(ctx context.Context, prefix string) (amqpURL string, drop func() error, err error) {
	return NewVHostOn(ctx, ManagementURL(), AMQPURL(), prefix)
}

// NewVHostOn is NewVHost on another broker than the machine's: managementURL is its management
// API (http://user:password@host:port) and brokerURL the AMQP URL of one of its nodes.
func NewVHostOn(ctx context.Context, managementURL, brokerURL, prefix string) (amqpURL string, drop func() error, err error) {
	name := Name(prefix)
	u, err := url.Parse(brokerURL)
	if err != nil {
		return "", nil, fmt.Errorf("parse amqp url: %w", err)
	}
	unlock, err := lockVHosts()
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	if err := ManagementOn(ctx, managementURL, http.MethodPut, "/api/vhosts/"+name, nil, nil); err != nil {
		return "", nil, err
	}
	drop = func() error {
		unlock, err := lockVHosts()
		if err != nil {
			return err
		}
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return ManagementOn(ctx, managementURL, http.MethodDelete, "/api/vhosts/"+name, nil, nil)
	}
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	if err := ManagementOn(ctx, managementURL, http.MethodPut, "/api/permissions/"+name+"/"+url.PathEscape(u.User.Username()), perm, nil); err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// lockVHosts serializes vhost creation and deletion across test processes: RabbitMQ 3.10 can
// stall every later vhost operation when two vhosts are added at the same moment.
func lockVHosts() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "ordersaga-vhosts.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("vhost lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("vhost lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// VHostExists reports whether the virtual host of amqpURL exists.
func VHostExists(ctx context.Context, amqpURL string) (bool, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return false, fmt.Errorf("parse amqp url: %w", err)
	}
	base, err := url.Parse(ManagementURL())
	if err != nil {
		return false, fmt.Errorf("parse management url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.Scheme+"://"+base.Host+"/api/vhosts/"+url.PathEscape(strings.TrimPrefix(u.Path, "/")), nil)
	if err != nil {
		return false, err
	}
	pass, _ := base.User.Password()
	req.SetBasicAuth(base.User.Username(), pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("rabbitmq management: %s", resp.Status)
}

// Listen binds a temporary queue to exchange for every routing key and returns its deliveries,
// so that a test sees what a service publishes. The connection closes at cleanup.
func Listen(t testing.TB, amqpURL, exchange string) <-chan amqp.Delivery {
	t.Helper()
	c, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declare temporary queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatalf("bind temporary queue: %v", err)
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("consume temporary queue: %v", err)
	}
	return ds
}

// Management calls the RabbitMQ management API with a JSON body (or none).
func Management(ctx context.Context, method, path string, body any) error {
	return ManagementOn(ctx, ManagementURL(), method, path, body, nil)
}

// ManagementGet reads path of the RabbitMQ management API, its JSON answer decoded into out.
func ManagementGet(ctx context.Context, path string, out any) error {
	return ManagementOn(ctx, ManagementURL(), http.MethodGet, path, nil, out)
}

// ManagementOn calls the management API of managementURL (http://user:password@host:port)
// with a JSON body (or none) and decodes its JSON answer into out (unless nil).
func ManagementOn(ctx context.Context, managementURL, method, path string, body, out any) error {
	base, err := url.Parse(managementURL)
	if err != nil {
		return fmt.Errorf("parse management url: %w", err)
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.Scheme+"://"+base.Host+path, r)
	if err != nil {
		return err
	}
	pass, _ := base.User.Password()
	req.SetBasicAuth(base.User.Username(), pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("rabbitmq management %s %s: %w (is the rabbitmq_management plugin enabled? make infra enables it)", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("rabbitmq management %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("rabbitmq management %s %s: %w", method, path, err)
	}
	return nil
}

// CloseConnections closes every client connection to the vhost of amqpURL, as a broker that
// drops its clients would. It waits until the management API lists at least one.
func CloseConnections(t testing.TB, amqpURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The management API learns of new connections with a short delay.
	Eventually(t, 20*time.Second, "connections listed", func() bool {
		n, err := CloseVHostConnections(ctx, amqpURL)
		if err != nil {
			t.Fatalf("close connections: %v", err)
		}
		return n > 0
	})
}

// CloseVHostConnections closes every client connection the management API lists for the vhost
// of amqpURL and returns how many it closed. It reports errors instead of failing a test, so
// that a fault injected from a goroutine of its own can use it.
func CloseVHostConnections(ctx context.Context, amqpURL string) (int, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return 0, fmt.Errorf("parse amqp url: %w", err)
	}
	var conns []struct {
		Name string `json:"name"`
	}
	if err := ManagementGet(ctx, "/api/vhosts/"+url.PathEscape(strings.TrimPrefix(u.Path, "/"))+"/connections", &conns); err != nil {
		return 0, fmt.Errorf("list connections: %w", err)
	}
	closed := 0
	for _, c := range conns {
		err := Management(ctx, http.MethodDelete, "/api/connections/"+url.PathEscape(c.Name), nil)
		// A connection may have gone by itself since it was listed.
		if err != nil && !strings.Contains(err.Error(), "404") {
			return closed, fmt.Errorf("close connection: %w", err)
		}
		closed++
	}
	return closed, nil
}

// Logger logs to the test's output when run with -v, and discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Eventually polls cond every 50ms until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
