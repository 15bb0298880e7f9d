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

// Claim records the event ids in tx and returns those seen for the first time. Ids already in
// the inbox, and repeats within eventIDs, are left out: their effect happened already.
func Claim(ctx context.Context, tx pgx.Tx, queue string, eventIDs []string) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `
		INSERT INTO idempotency_keys (event_id, queue)
		SELECT id, $2 FROM unnest($1::text[]::uuid[]) AS id
		ON CONFLICT DO NOTHING
		RETURNING event_id::text`, eventIDs, queue)
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	fresh := make(map[string]bool, len(ids))
	for _, id := range ids {
		fresh[id] = true
	}
	return fresh, nil
}
