// Package database opens a service's PostgreSQL pool: it creates the database when missing,
// waits for the server with backoff, and applies the embedded migrations.
package database

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations is one set of embedded goose migrations, tracked in its own version table so that
// a service and the packages it uses (inbox, outbox) each migrate their own tables.
type Migrations struct {
	Table string // goose version table
	FS    fs.FS  // *.sql at its root
}

// Querier runs statements: a transaction, or a connection inside one. Stores take a Querier so
// that a unit of work can pipeline its own BEGIN and COMMIT with the statements around them.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// DefaultMaxConns is the size of a service's pool unless its URL sets pool_max_conns: what a
// database must allow per replica of the service.
const DefaultMaxConns = 16

// SessionLimits are the settings made on every connection a service opens unless its URL sets them. A
// statement or lock wait longer than these is an outage, retried as one; no handler batch may
// legitimately hold a transaction idle that long.
var SessionLimits = map[string]string{
	"statement_timeout":                   "30s",
	"lock_timeout":                        "15s",
	"idle_in_transaction_session_timeout": "15s",
	// Statements are prepared once per connection, and PostgreSQL would otherwise settle on a
	// generic plan after five runs: one made while the tables were empty, a sequential scan
	// that it then keeps however large they grow (until an ANALYZE). Planning each run with
	// its parameters costs microseconds; such a scan costs a pass over the table per batch.
	"plan_cache_mode": "force_custom_plan",
}

// Bounds on a connection that goes silent without closing (a peer that vanished, a half-open
// link): without them a statement waits for TCP to give up, about 15 minutes.
const (
	// ConnectTimeout bounds opening a connection, TLS and authentication included, unless the
	// URL sets connect_timeout.
	ConnectTimeout = 5 * time.Second
	// PingTimeout bounds the liveness ping the pool sends on a connection that sat idle before
	// handing it out; a connection that does not answer is closed and another one is used.
	PingTimeout = 5 * time.Second
	// TCPUserTimeout is how long data sent may go unacknowledged before the kernel drops the
	// connection (TCP_USER_TIMEOUT, Linux), and keepAlive* probe a connection that waits for
	// an answer with nothing in flight: a vanished server is noticed within about 20 s.
	TCPUserTimeout    = 20 * time.Second
	keepAliveIdle     = 5 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 3
	// roundTripSlack is added to the session's statement_timeout to bound every round trip the
	// caller did not bound itself: PostgreSQL ends a statement before that, so only a link
	// that lost its bytes on the way (which TCP cannot see when a proxy or a middlebox acks
	// them) reaches the bound.
	roundTripSlack = 5 * time.Second
)

// Open connects to url (creating the database when it does not exist), retrying until ctx ends,
// and applies every set of migrations in order.
func Open(ctx context.Context, url string, log *slog.Logger, migrations ...Migrations) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool sizes by CPU count (4 here), too few for a service's consumers, relay,
		// listeners and API at once. pool_max_conns in the URL overrides this.
		cfg.MaxConns = DefaultMaxConns
	}
	// Bounds on what a stalled or lost client can hold: a process paused in the middle of a
	// transaction loses it, and its row locks and inbox claims, after IdleInTransactionTimeout.
	// Settings in the URL win.
	for name, value := range SessionLimits {
		if _, set := cfg.ConnConfig.RuntimeParams[name]; !set {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	cfg.ConnConfig.DialFunc = dialer().DialContext
	cfg.PingTimeout = PingTimeout
	if cfg.ConnConfig.Tracer == nil {
		cfg.ConnConfig.Tracer = queryTracer{database: cfg.ConnConfig.Database}
	}
	if bound := roundTripBound(cfg.ConnConfig.RuntimeParams["statement_timeout"]); bound > 0 {
		cfg.ConnConfig.Tracer = boundedTracer{next: cfg.ConnConfig.Tracer, bound: bound}
	}
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 5 * time.Second
	pool, err := backoff.Retry(ctx, func() (*pgxpool.Pool, error) {
		pool, err := connect(ctx, cfg)
		if err != nil {
			log.WarnContext(ctx, "database not reachable, retrying", "database", cfg.ConnConfig.Database, "err", err)
		}
		return pool, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, pool, migrations...); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func connect(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	err = pool.Ping(ctx)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name: no such database
		pool.Close()
		if err := Create(ctx, cfg.ConnConfig); err != nil {
			return nil, err
		}
		return connect(ctx, cfg)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Create creates the database named by cfg, connecting to the server's postgres database.
// It is a no-op when the database exists.
func Create(ctx context.Context, cfg *pgx.ConnConfig) error {
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to create database: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Database}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") { // exists, or created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	return nil
}

// Migrate applies every set of migrations, each under its own version table.
func Migrate(ctx context.Context, pool *pgxpool.Pool, migrations ...Migrations) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	for _, m := range migrations {
		// The session lock lets several replicas start at once: one migrates, the others wait.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		p, err := goose.NewProvider(goose.DialectPostgres, db, m.FS,
			goose.WithTableName(m.Table), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			return fmt.Errorf("migrations %s: %w", m.Table, err)
		}
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Table, err)
		}
	}
	return nil
}

// dialer opens the TCP connections of a pool with keepalive probes and, on Linux, a TCP user
// timeout, so that a server that vanished mid-statement is noticed by the kernel.
func dialer() *net.Dialer {
	return &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount},
		Control:         setUserTimeout,
	}
}

// roundTripBound is how long a round trip may take when its caller set no deadline: the
// session's statement_timeout (a PostgreSQL duration, "30s") and roundTripSlack; 0 (no bound)
// when statements may run unbounded or the setting is not understood.
func roundTripBound(statementTimeout string) time.Duration {
	v := strings.ReplaceAll(strings.TrimSpace(statementTimeout), " ", "")
	d, err := time.ParseDuration(v)
	if err != nil {
		if ms, err2 := time.ParseDuration(v + "ms"); err2 == nil { // a bare number is milliseconds
			d, err = ms, nil
		}
	}
	if err != nil || d <= 0 {
		return 0
	}
	return d + roundTripSlack
}

// boundedTracer gives every query, batch, prepare and copy whose context has no deadline one of
// bound, so that no round trip on a silent connection waits forever: pgx runs the rest of the
// call under the context a tracer's Start returns. The cancel is kept in the context and
// called at End. It wraps next, the tracer that records spans.
type boundedTracer struct {
	next  pgx.QueryTracer
	bound time.Duration
}

var (
	_ pgx.QueryTracer    = boundedTracer{}
	_ pgx.BatchTracer    = boundedTracer{}
	_ pgx.PrepareTracer  = boundedTracer{}
	_ pgx.CopyFromTracer = boundedTracer{}
)

type cancelKey struct{}

func (t boundedTracer) bounded(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok {
		if ctx.Value(cancelKey{}) != nil {
			// A call inside a bounded one (the prepare of a query): its End must not end the
			// outer call's bound.
			return context.WithValue(ctx, cancelKey{}, context.CancelFunc(nil))
		}
		return ctx
	}
	ctx, cancel := context.WithTimeout(ctx, t.bound)
	return context.WithValue(ctx, cancelKey{}, cancel)
}

func release(ctx context.Context) {
	if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok && cancel != nil {
		cancel()
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (t boundedTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return t.next.TraceQueryStart(t.bounded(ctx), conn, data)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t boundedTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	t.next.TraceQueryEnd(ctx, conn, data)
	release(ctx)
}

// TraceBatchStart implements pgx.BatchTracer.
func (t boundedTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	ctx = t.bounded(ctx)
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		return bt.TraceBatchStart(ctx, conn, data)
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (t boundedTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, conn, data)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t boundedTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, conn, data)
	}
	release(ctx)
}

// TracePrepareStart implements pgx.PrepareTracer.
func (t boundedTracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	ctx = t.bounded(ctx)
	if pt, ok := t.next.(pgx.PrepareTracer); ok {
		return pt.TracePrepareStart(ctx, conn, data)
	}
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (t boundedTracer) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	if pt, ok := t.next.(pgx.PrepareTracer); ok {
		pt.TracePrepareEnd(ctx, conn, data)
	}
	release(ctx)
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (t boundedTracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	ctx = t.bounded(ctx)
	if ct, ok := t.next.(pgx.CopyFromTracer); ok {
		return ct.TraceCopyFromStart(ctx, conn, data)
	}
	return ctx
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (t boundedTracer) TraceCopyFromEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	if ct, ok := t.next.(pgx.CopyFromTracer); ok {
		ct.TraceCopyFromEnd(ctx, conn, data)
	}
	release(ctx)
}
