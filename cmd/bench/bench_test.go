package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ordersaga/ordersaga/internal/stack"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stack.RemoveBinaries()
	os.Exit(code)
}

// TestBenchShort runs every scenario briefly at low load against a real stack and checks the
// bench's own plumbing: every row is there, the hot-product check passes, nothing failed. It
// asserts nothing about speed.
func TestBenchShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.duration = 2 * time.Second
	cfg.drain = 30 * time.Second
	cfg.baseline = 500 * time.Millisecond
	cfg.inFlight = 8
	cfg.products = 5
	cfg.rates, _ = parseRates("10,1/4")
	cfg.conns = 2
	cfg.logLevel = "warn"

	var progress bytes.Buffer
	rep, err := run(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if rep.pgCommits <= 0 || rep.brokerMsgs <= 0 {
		t.Errorf("baselines: %.0f commits/s, %.0f messages/s", rep.pgCommits, rep.brokerMsgs)
	}
	if f := rep.floor; f.commitP50 <= 0 || f.hopP50 <= 0 || f.idleCommitP50 <= 0 || f.idleHopP50 <= 0 {
		t.Errorf("floors %+v: each measured, back to back and idle", f)
	}
	if got, want := len(rep.results), 4; got != want {
		t.Fatalf("%d scenarios ran, want %d", got, want)
	}
	if want := rep.results[0].rate() / 4; math.Abs(rep.results[3].scenario.rate-want) > 0.01 {
		t.Errorf("open 1/4 of closed ran at %.1f/s, want a quarter of %.1f/s", rep.results[3].scenario.rate, rep.results[0].rate())
	}
	for _, r := range rep.results {
		if r.completed == 0 || r.completed != r.placed || r.errors > 0 || r.unfinished > 0 {
			t.Errorf("%s: placed %d, completed %d, unfinished %d, errors %d (first: %v)",
				r.name, r.placed, r.completed, r.unfinished, r.errors, r.firstErr)
		}
		if r.firstErr != nil {
			t.Errorf("%s: %v", r.name, r.firstErr)
		}
		if len(r.latencies) == 0 {
			t.Errorf("%s: no latencies", r.name)
		}
		for name := range histograms {
			if len(r.means[name]) == 0 {
				t.Errorf("%s: no %s from /metrics", r.name, name)
			}
		}
		for _, g := range cpuGroups {
			if r.cpu.groups[g] < 0 {
				t.Errorf("%s: CPU of %s %f", r.name, g, r.cpu.groups[g])
			}
		}
		if r.cpu.capacity <= 0 || r.cpu.busy <= 0 {
			t.Errorf("%s: machine CPU busy %f of %f", r.name, r.cpu.busy, r.cpu.capacity)
		}
		if r.kind == "hot" {
			if r.hot == nil || !r.hot.ok() {
				t.Errorf("hot product check: %v", r.hot)
			}
		}
	}

	for _, markdown := range []bool{false, true} {
		var out bytes.Buffer
		rep.write(&out, markdown)
		text := out.String()
		for _, r := range rep.results {
			if c := strings.Count(text, r.name); c < 3 {
				t.Errorf("markdown %t: %q appears %d times, want a row in each table", markdown, r.name, c)
			}
		}
		// The open loops split the first hop's stage into its relay, broker and unit of work.
		if !regexp.MustCompile(`payment\.order-created[ |]+[0-9.]+ / [0-9.]+ / [0-9.]+`).MatchString(text) {
			t.Errorf("markdown %t: no split of payment.order-created's stage:\n%s", markdown, text)
		}
		for _, want := range []string{"Hot product check", "ok:", "commits/s", "messages/s", "payment.order-created",
			"critical path " + dur(rep.floor.idleCriticalPath())} {
			if !strings.Contains(text, want) {
				t.Errorf("markdown %t: report lacks %q:\n%s", markdown, want, text)
			}
		}
	}
}

func TestParseRates(t *testing.T) {
	t.Parallel()
	rates, err := parseRates("20, 1/3,200")
	if err != nil {
		t.Fatal(err)
	}
	closed := 300.0
	var got []float64
	for _, r := range rates {
		v, err := r.of(closed)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if len(got) != 3 || got[0] != 20 || math.Abs(got[1]-100) > 1e-9 || got[2] != 200 {
		t.Errorf("rates %v, want [20 100 200]", got)
	}
	if _, err := rates[1].of(0); err == nil {
		t.Error("a share of a closed loop that did not run has a rate")
	}
	for _, bad := range []string{"0", "-5", "1/0", "x", "1/x"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("rate %q accepted", bad)
		}
	}
}
