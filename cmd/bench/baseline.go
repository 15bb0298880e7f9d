package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

const (
	baselineConns    = 4
	baselineDuration = 5 * time.Second
)

// baseline is this machine's PostgreSQL commit rate, measured on a scratch database.
type baseline struct {
	commits       float64 // single-row INSERT transactions per second
	notifyCommits float64 // the same with a NOTIFY in each transaction
}

// postgresBaseline measures how many single-row transactions per second PostgreSQL commits:
// every saga step costs at least one commit, so it bounds what the system can do here. It
// measures again with a NOTIFY in each transaction, because PostgreSQL serializes the commits
// of notifying transactions on one lock held through the WAL flush, across all databases.
func postgresBaseline(ctx context.Context) (baseline, error) {
	var res baseline
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		return res, err
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "bench_baseline_" + hex.EncodeToString(b)
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return res, err
	}
	if err := database.Create(ctx, cfg); err != nil {
		return res, err
	}
	defer func() {
		if err := testenv.DropDatabase(name); err != nil {
			fmt.Println(err)
		}
	}()

	setup, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return res, err
	}
	_, err = setup.Exec(ctx, "CREATE TABLE commits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)")
	setup.Close(ctx)
	if err != nil {
		return res, err
	}

	if res.commits, err = commitRate(ctx, cfg, "INSERT INTO commits (note) VALUES ('baseline')"); err != nil {
		return res, err
	}
	res.notifyCommits, err = commitRate(ctx, cfg, "INSERT INTO commits (note) VALUES ('baseline'); SELECT pg_notify('bench_baseline', '')")
	return res, err
}

// commitRate runs stmt (one implicit transaction) in a loop on baselineConns connections for
// baselineDuration and returns the transactions per second.
func commitRate(ctx context.Context, cfg *pgx.ConnConfig, stmt string) (float64, error) {
	var commits atomic.Int64
	errs := make([]error, baselineConns)
	start := time.Now()
	deadline := start.Add(baselineDuration)
	var wg sync.WaitGroup
	for i := range baselineConns {
		wg.Go(func() {
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(context.Background())
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					errs[i] = err
					return
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(commits.Load()) / time.Since(start).Seconds(), nil
}
