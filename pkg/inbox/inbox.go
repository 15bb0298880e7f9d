// Package inbox makes event handling idempotent: a handler claims an event's id in the same
// transaction as its effect, and an event already claimed is skipped.
package inbox

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/pkg/database"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the idempotency_keys table.
var Migrations = database.Migrations{Table: "goose_inbox_version", FS: database.Sub(migrations, "migrations")}

// Claim records the event ids through q, inside its transaction, and returns those seen for
// the first time. Ids already in the inbox, and repeats within eventIDs, are left out: their
// effect happened already.
func Claim(ctx context.Context, q database.Querier, queue string, eventIDs []string) (map[string]bool, error) {
	fresh := map[string]bool{}
	b := &pgx.Batch{}
	QueueClaim(b, queue, eventIDs, fresh)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	return fresh, nil
}

// QueueClaim is Claim as a statement of batch b, for sending along with others (the BEGIN before
// it): once b has been sent, fresh holds the ids seen for the first time.
func QueueClaim(b *pgx.Batch, queue string, eventIDs []string, fresh map[string]bool) {
	b.Queue(`
		INSERT INTO idempotency_keys (event_id, queue)
		SELECT id, $2 FROM unnest($1::text[]::uuid[]) AS id
		ON CONFLICT DO NOTHING
		RETURNING event_id::text`, eventIDs, queue).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			fresh[id] = true
			return nil
		})
		return err
	})
}
