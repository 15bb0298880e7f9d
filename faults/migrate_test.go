//go:build faults

package faults

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// gooseTables are the migration version tables of every service database: the service's own,
// the inbox's and the outbox's (pkg/database.Migrations).
var gooseTables = []string{"goose_db_version", "goose_inbox_version", "goose_outbox_version"}

// migrationVersions reads the newest applied version of every goose table of every service
// database, keyed "<svc> <table>".
func (e *env) migrationVersions(ctx context.Context) map[string]int64 {
	out := map[string]int64{}
	for svc, url := range e.stack.DatabaseURLs {
		// A connection of its own, closed at once: nothing of the test's stays in the
		// databases the transaction watch samples.
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			e.t.Errorf("%s database: %v", svc, err)
			continue
		}
		for _, table := range gooseTables {
			var v int64
			if err := conn.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM `+table).Scan(&v); err != nil {
				e.t.Errorf("%s %s: %v", svc, table, err)
				continue
			}
			out[svc+" "+table] = v
		}
		conn.Close(ctx)
	}
	return out
}

func fmtVersions(m map[string]int64) string {
	var parts []string
	for _, svc := range stack.Services {
		var vs []string
		for _, table := range gooseTables {
			vs = append(vs, strconv.FormatInt(m[svc+" "+table], 10))
		}
		parts = append(parts, svc+" "+strings.Join(vs, "/"))
	}
	return strings.Join(parts, ", ")
}

// TestFaultConcurrentMigrations starts two replicas of every service of the
// code under test at once on fresh databases: both migrate at the same moment, and both must
// come up (goose holds a session lock while it migrates, pkg/database) with every migration
// applied once; then a stream of orders and the invariants.
func TestFaultConcurrentMigrations(t *testing.T) {
	e := start(t, stack.Options{Replicas: 2}) // Start starts every process at once
	ctx := t.Context()
	for svc, url := range e.stack.DatabaseURLs {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("%s database: %v", svc, err)
		}
		defer conn.Close(ctx)
		for _, table := range gooseTables {
			var twice int
			err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT version_id FROM `+table+
				` WHERE version_id > 0 GROUP BY version_id HAVING count(*) > 1) d`).Scan(&twice)
			if err != nil {
				t.Errorf("%s %s: %v", svc, table, err)
			} else if twice > 0 {
				t.Errorf("%s %s: %d migrations recorded more than once", svc, table, twice)
			}
		}
	}
	t.Logf("migration versions (service/inbox/outbox): %s", fmtVersions(e.migrationVersions(ctx)))
	res := e.stream(streamOptions{Orders: 320, Duration: 8 * time.Second}, nil)
	e.verify(res, 0)
}
