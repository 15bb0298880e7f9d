package database_test

import (
	"context"
	"net/url"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

func TestOpenCreatesAMissingDatabaseAndMigratesIt(t *testing.T) {
	t.Parallel()
	testenv.Needs(t, "PostgreSQL")
	name := testenv.Name("test_open")
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		if err := testenv.DropDatabase(name); err != nil {
			t.Error(err)
		}
	})
	migrations := database.Migrations{Table: "goose_db_version", FS: fstest.MapFS{
		"00001_things.sql": {Data: []byte("-- +goose Up\nCREATE TABLE things (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE things;\n")},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 { // a second start finds the database and its migrations in place
		pool, err := database.Open(ctx, u.String(), testenv.Logger(t), migrations)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO things VALUES (1) ON CONFLICT DO NOTHING"); err != nil {
			t.Errorf("migrated table: %v", err)
		}
		if got := pool.Config().MaxConns; got != 16 {
			t.Errorf("pool size %d, want 16", got)
		}
		pool.Close()
	}
}
