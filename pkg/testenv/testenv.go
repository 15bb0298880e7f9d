// Package testenv gives tests their own PostgreSQL database and RabbitMQ virtual host on the
// real servers of this machine, and removes them when the test ends.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// DatabaseURL creates an empty database and returns its URL; it is dropped at cleanup.
func DatabaseURL(t testing.TB, prefix string) string {
	t.Helper()
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
	t.Cleanup(func() { dropDatabase(t, name) })
	return u.String()
}

func dropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
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
	name := Name("test")
	rabbitmqctl(t, "add_vhost", name)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", name) })
	u, err := url.Parse(AMQPURL())
	if err != nil {
		t.Fatalf("parse amqp url: %v", err)
	}
	rabbitmqctl(t, "set_permissions", "-p", name, u.User.Username(), ".*", ".*", ".*")
	u.Path = "/" + name
	return u.String()
}

// Rabbitmqctl runs rabbitmqctl with args and returns its output, failing the test on error.
func Rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	return rabbitmqctl(t, args...)
}

func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
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
