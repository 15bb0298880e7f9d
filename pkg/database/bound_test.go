package database

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestRoundTripBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"30s", 35 * time.Second},
		{"1min", 0}, // not understood: no bound rather than a wrong one
		{"2 s", 7 * time.Second},
		{"1500", 6500 * time.Millisecond}, // milliseconds
		{"0", 0},                          // statements may run unbounded
		{"", 0},
	} {
		if got := roundTripBound(tc.in); got != tc.want {
			t.Errorf("roundTripBound(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestBoundedTracerBoundsOnlyUnboundedCalls(t *testing.T) {
	t.Parallel()
	tr := boundedTracer{next: queryTracer{}, bound: time.Minute}

	ctx := tr.TraceQueryStart(context.Background(), nil, pgx.TraceQueryStartData{SQL: "SELECT 1"})
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > time.Minute {
		t.Fatalf("unbounded call: deadline %v %v, want within a minute", deadline, ok)
	}
	// pgx prepares a query's statement under the query's context: the inner call's end leaves
	// the query running.
	inner := tr.TracePrepareStart(ctx, nil, pgx.TracePrepareStartData{})
	tr.TracePrepareEnd(inner, nil, pgx.TracePrepareEndData{})
	if ctx.Err() != nil {
		t.Fatal("a prepare inside the query ended the query's bound")
	}
	tr.TraceQueryEnd(ctx, nil, pgx.TraceQueryEndData{})
	if ctx.Err() == nil {
		t.Error("the bound's timer is still running after the call ended")
	}

	mine, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ctx = tr.TraceBatchStart(mine, nil, pgx.TraceBatchStartData{})
	if d, _ := ctx.Deadline(); time.Until(d) < 59*time.Minute {
		t.Errorf("the caller's deadline was replaced: %v", d)
	}
	tr.TraceBatchEnd(ctx, nil, pgx.TraceBatchEndData{})
	if mine.Err() != nil {
		t.Error("the caller's context was cancelled")
	}
}
