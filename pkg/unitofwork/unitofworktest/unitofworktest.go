// Package unitofworktest opens units of work on PostgreSQL the way the runner does, for the
// tests of a service's store: a transaction, the store's reads ahead, its writes flushed with
// the commit.
package unitofworktest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/unitofwork"
)

// Begin opens a transaction on pool and binds newStore to it. With batch not nil, the store's
// reads ahead of batch go in one round trip first, as the runner sends them with its BEGIN.
// The end it returns flushes the store's writes, commits and calls Committed when commit is
// true, and rolls back otherwise; failures fail t.
func Begin[T unitofwork.Tx](t *testing.T, pool *pgxpool.Pool, newStore func(database.Querier) T, batch *unitofwork.Batch) (store T, end func(commit bool)) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	s := newStore(tx)
	if batch != nil {
		b := &pgx.Batch{}
		s.Prepare(b, *batch)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			tx.Rollback(ctx)
			t.Fatalf("prepare: %v", err)
		}
	}
	return s, func(commit bool) {
		t.Helper()
		if !commit {
			if err := tx.Rollback(ctx); err != nil {
				t.Errorf("rollback: %v", err)
			}
			return
		}
		if err := Commit(ctx, tx, s); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit flushes the writes of s in one round trip, commits tx and tells s it committed; it
// rolls back on failure.
func Commit(ctx context.Context, tx pgx.Tx, s unitofwork.Tx) error {
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	if err := s.Flush(b); err != nil {
		return err
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.Committed()
	return nil
}
