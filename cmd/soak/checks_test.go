package main

import (
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/pkg/inbox"
)

func TestGrowthBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		what        string
		first, last float64
		ok          bool
	}{
		{"goroutines", 60, 140, true},  // 60 × 1.5 + 50 = 140
		{"goroutines", 60, 141, false}, // one more is growth
		{"FDs", 20, 10, true},          // shrinking is fine
		{"FDs", 20, 51, false},
		{"PG conns", 4, 10, true},
		{"RSS", 40 << 20, 124 << 20, true},
		{"RSS", 40 << 20, 125 << 20, false},
	} {
		if _, ok := growth(tc.what, tc.first, tc.last); ok != tc.ok {
			t.Errorf("growth(%s, %v → %v) ok = %v, want %v", tc.what, tc.first, tc.last, ok, tc.ok)
		}
	}
}

// at is a sample at d into the run whose services have handled consumed events so far.
func at(d time.Duration, consumed float64) sample {
	return sample{at: d, procs: map[string]proc{"order": {consumed: consumed}}}
}

func TestInboxBoundCountsTheEventsOfTheTrailingWindow(t *testing.T) {
	t.Parallel()
	retention, interval := time.Minute, 15*time.Second
	window := retention + inbox.PruneInterval(retention) + interval // 1m30s
	var samples []sample
	for i := 1; i <= 8; i++ { // every 15s, 100 events each
		samples = append(samples, at(time.Duration(i)*interval, float64(100*i)))
	}
	bound, ok := inboxBound(samples, retention, interval)
	if !ok {
		t.Fatal("a 2m run with a 1m30s window is not checked")
	}
	// The latest sample at least 1m30s before the end (2m) is the one at 30s: 800 - 200.
	if bound != 600 {
		t.Errorf("bound = %v, want 600 (window %s)", bound, window)
	}
	if _, ok := inboxBound(samples[:5], retention, interval); ok {
		t.Error("a 1m15s run is checked against a 1m30s window")
	}
}
