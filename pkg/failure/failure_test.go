package failure_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ordersaga/ordersaga/pkg/failure"
)

func TestClassification(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("insert: %w", &pgconn.PgError{Code: code}) }
	for _, c := range []struct {
		name                 string
		err                  error
		transient, permanent bool
	}{
		{"nil", nil, false, false},
		{"permanent", failure.Permanent(errors.New("undecodable")), false, true},
		{"invalid", failure.Invalid("items[%d]: bad", 1), false, true},
		{"permanent wins over a transient cause", failure.Permanent(io.EOF), false, true},
		{"lost connection", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, false},
		{"deadline", context.DeadlineExceeded, true, false},
		{"admin shutdown", pg("57P01"), true, false},
		{"connection exception", pg("08006"), true, false},
		{"deadlock", pg("40P01"), true, false},
		{"serialization", pg("40001"), true, false},
		{"lock timeout", pg("55P03"), true, false},
		{"idle in transaction timeout", pg("25P03"), true, false},
		{"read-only standby", pg("25006"), true, false},
		{"unique violation", pg("23505"), false, false},
		{"check violation", pg("23514"), false, false},
		{"unknown", errors.New("something else"), false, false},
	} {
		if got := failure.IsTransient(c.err); got != c.transient {
			t.Errorf("%s: IsTransient = %v", c.name, got)
		}
		if got := failure.IsPermanent(c.err); got != c.permanent {
			t.Errorf("%s: IsPermanent = %v", c.name, got)
		}
	}
}
