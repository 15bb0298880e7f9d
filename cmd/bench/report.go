package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/internal/loadgen"
	"github.com/ordersaga/ordersaga/pkg/catalog"
)

// report is everything one run measured.
type report struct {
	command    string
	cores      int
	clock      clock
	replicas   int
	baseline   time.Duration
	duration   time.Duration // of each scenario's load
	drain      time.Duration
	pgCommits  float64 // PostgreSQL single-row commits/s
	brokerMsgs float64 // persistent messages/s through one quorum queue
	floor      floors
	seeded     int           // orders the database held before the scenarios (-seed-orders)
	heavy      int           // of them, the orders of the customer ListOrders is timed on
	reads      readLatencies // GetOrder and ListOrders on that database
	results    []*result
}

// table is rendered either aligned for a terminal or as Markdown, followed by a blank line.
// Numbers align right; the columns in left do not.
type table struct {
	header []string
	rows   [][]string
	left   []int
}

func (t table) write(w io.Writer, markdown bool) {
	if markdown {
		fmt.Fprintf(w, "| %s |\n", strings.Join(t.header, " | "))
		seps := make([]string, len(t.header))
		for i := range seps {
			seps[i] = "---:"
			if i == 0 || slices.Contains(t.left, i) {
				seps[i] = "---"
			}
		}
		fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
		for _, r := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		}
		fmt.Fprintln(w)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.header, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func (rep *report) write(w io.Writer, markdown bool) {
	// Tables end with a blank line; so does each group of notes (in Markdown, each note).
	heading := func(s string) {
		if markdown {
			fmt.Fprintf(w, "**%s**\n\n", s)
		} else {
			fmt.Fprintln(w, s)
		}
	}
	note := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		if markdown {
			fmt.Fprintln(w)
		}
	}
	endNotes := func() {
		if !markdown {
			fmt.Fprintln(w)
		}
	}

	heading("Scenarios")
	rep.scenarioTable().write(w, markdown)
	note("Closed loop: a fixed number of orders in flight, each order 1 unit of a product picked at random "+
		"(hot: every order on one product with finite stock). Open loop: orders started at a fixed rate. "+
		"1 in 20 orders is paid with a declined card. Each scenario runs %s, then waits up to %s for its orders.", rep.duration, rep.drain)
	note("orders/s = orders that reached a final status / time from the first create to the last final status. " +
		"Latency = CreateOrder sent → final status seen on the order's WatchOrder stream; " +
		"for the open-loop rows, of CONFIRMED orders only (create → CONFIRMED).")
	endNotes()

	heading("Latency against the machine's floor")
	rep.floorTable().write(w, markdown)
	note("Floors, measured with nothing else in flight before the stack started (%d samples each): a PostgreSQL commit "+
		"from one client p50 %s, p99 %s; one broker hop (persistent publish to a quorum queue until its confirm and its "+
		"delivery on another connection) p50 %s, p99 %s. An order's critical path is CreateOrder's commit and four hops, "+
		"each a commit and a broker hop: floor %s. Ratios are the open-loop latency (create → CONFIRMED) over that floor. "+
		"The same with each sample %s after the last (%d each), as the processes an order wakes sleep between "+
		"the orders of a slow open loop: commit p50 %s, hop p50 %s, critical path %s.",
		floorSamples, dur(rep.floor.commitP50), dur(rep.floor.commitP99), dur(rep.floor.hopP50), dur(rep.floor.hopP99),
		dur(rep.floor.criticalPath()), idleGap, idleSamples, dur(rep.floor.idleCommitP50), dur(rep.floor.idleHopP50),
		dur(rep.floor.idleCriticalPath()))
	endNotes()

	heading("Mean batch size per queue (events per handled batch, all replicas)")
	rep.labelTable("queue", func(r *result) map[string]float64 { return r.means[batchMetric] }, "%.1f").write(w, markdown)

	heading("Mean events per unit of work, by service (batches of a service's queues that arrive together share one)")
	rep.labelTable("service", func(r *result) map[string]float64 { return r.means[unitMetric] }, "%.1f").write(w, markdown)

	heading("Mean time per stage, ms (an event occurring → its effect committed, by the queue that carried it)")
	rep.labelTable("queue", func(r *result) map[string]float64 { return r.means[stageMetric] }, "%.1f", 1000).write(w, markdown)

	heading("Where a stage's time goes, ms, open loops: relay / broker / unit of work")
	rep.stageSplitTable().write(w, markdown)
	note("Means per event. relay: written to the publisher's outbox → published, for events the relay was handed at " +
		"their commit (the event's routing key). broker: published → the consumer's unit of work began, " +
		"including the wait behind the batch before it. unit of work: began → committed. Their sum is the stage above.")
	endNotes()

	heading("CPU ms per completed order")
	rep.cpuTable().write(w, markdown)
	hzNote := fmt.Sprintf("%.0f ticks/s from getconf CLK_TCK", rep.clock.hz)
	if rep.clock.assumed {
		hzNote = "getconf CLK_TCK failed: 100 ticks/s assumed"
	}
	note("From /proc (%s), over each scenario from its first order to its last final status. "+
		"postgres and rabbitmq are the whole server process trees (postgres: every postgres process plus what the "+
		"postmaster reaped, so backends that exited are counted; rabbitmq: beam.smp and its children). "+
		"They are shared by everything on this machine, as is the machine's total: other work running at the same time "+
		"shows up there and in other = machine − the groups. loadgen is this process.", hzNote)
	endNotes()

	for _, r := range rep.results {
		if r.hot != nil {
			note("Hot product check (%s): %s", r.name, r.hot)
		}
		if len(r.cpu.restarted) > 0 {
			note("%s: replicas of %s restarted during the run; their CPU is undercounted", r.name, strings.Join(r.cpu.restarted, ", "))
		}
		if r.firstErr != nil {
			note("%s: first error: %v", r.name, r.firstErr)
		}
		if r.unfinished > 0 {
			note("%s: %d orders were not final when the drain ended (raise -drain); latency and CPU per order count completed orders only",
				r.name, r.unfinished)
		}
	}
	note("Baselines on this machine (%d CPUs, measured %s each before the stack started): PostgreSQL %.0f commits/s "+
		"(single-row INSERT per transaction, %d connections); RabbitMQ %.0f persistent messages/s through one quorum queue "+
		"(publisher confirms, %d in flight; consumer prefetch %d, acks %d at a time). Services: %s each; "+
		"PostgreSQL, RabbitMQ and the load generator on the same machine.",
		rep.cores, rep.baseline, rep.pgCommits, baselineConns, rep.brokerMsgs, pipeWindow, pipePrefetch, pipeAckEvery, plural(rep.replicas, "replica"))
	if rep.seeded > 0 {
		note("Database: %d orders of the past year seeded before the scenarios, with their items, history and inbox entries; "+
			"reads before the load: %s (ListOrders for a customer with %d orders).", rep.seeded, rep.reads, rep.heavy)
	}
	if markdown {
		note("Command: `%s`", rep.command)
	} else {
		note("Command: %s", rep.command)
	}
}

func (rep *report) scenarioTable() table {
	t := table{header: []string{"scenario", "placed", "completed", "unfinished", "errors", "orders/s", "p50", "p95", "p99", "max", "outcomes"}, left: []int{10}}
	for _, r := range rep.results {
		t.rows = append(t.rows, []string{r.name, fmt.Sprint(r.placed), fmt.Sprint(r.completed), fmt.Sprint(r.unfinished),
			fmt.Sprint(r.errors), fmt.Sprintf("%.1f", r.rate()),
			ms(r.latencies, 0.50), ms(r.latencies, 0.95), ms(r.latencies, 0.99), ms(r.latencies, 1), outcomes(r.outcomes)})
	}
	return t
}

// floorTable sets each open-loop scenario's latency beside the critical path's floor.
func (rep *report) floorTable() table {
	t := table{header: []string{"scenario", "p50", "p99", "p50 / floor", "p99 / floor"}}
	floor := rep.floor.criticalPath()
	for _, r := range rep.results {
		if !r.confirmedOnly || len(r.latencies) == 0 || floor <= 0 {
			continue
		}
		p50, p99 := loadgen.Percentile(r.latencies, 0.50), loadgen.Percentile(r.latencies, 0.99)
		t.rows = append(t.rows, []string{r.name, dur(p50), dur(p99),
			fmt.Sprintf("%.1f×", float64(p50)/float64(floor)), fmt.Sprintf("%.1f×", float64(p99)/float64(floor))})
	}
	return t
}

// labelTable is a figure (of) per value of a metric's label (column names it) for every
// scenario, formatted with format after scaling by scale (if given).
func (rep *report) labelTable(column string, of func(*result) map[string]float64, format string, scale ...float64) table {
	t := table{header: []string{column}}
	values := map[string]bool{}
	for _, r := range rep.results {
		t.header = append(t.header, r.name)
		for v := range of(r) {
			values[v] = true
		}
	}
	if len(values) == 0 {
		values["(no figures)"] = true
	}
	factor := 1.0
	for _, f := range scale {
		factor *= f
	}
	for _, v := range slices.Sorted(maps.Keys(values)) {
		row := []string{v}
		for _, r := range rep.results {
			if m, ok := of(r)[v]; ok {
				row = append(row, fmt.Sprintf(format, m*factor))
			} else {
				row = append(row, "-")
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// stageSplitTable splits each queue's stage into the relay's, the broker's and the unit of
// work's part, for the open-loop scenarios.
func (rep *report) stageSplitTable() table {
	t := table{header: []string{"queue"}}
	var open []*result
	for _, r := range rep.results {
		if r.kind == "open" {
			open = append(open, r)
			t.header = append(t.header, r.name)
		}
	}
	for _, sub := range catalog.Subscriptions() {
		q := sub.Queue()
		row, any := []string{q}, false
		for _, r := range open {
			stage, ok1 := r.means[stageMetric][q]
			wait, ok2 := r.means[waitMetric][q]
			relay, ok3 := r.means[relayMetric][sub.RoutingKey]
			if !ok1 || !ok2 || !ok3 {
				row = append(row, "-")
				continue
			}
			any = true
			row = append(row, fmt.Sprintf("%.1f / %.1f / %.1f", relay*1000, (wait-relay)*1000, (stage-wait)*1000))
		}
		if any {
			t.rows = append(t.rows, row)
		}
	}
	slices.SortFunc(t.rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return t
}

func (rep *report) cpuTable() table {
	t := table{header: append(append([]string{"scenario"}, cpuGroups...), "other", "machine", "machine busy / had (CPU-s)")}
	for _, r := range rep.results {
		row := []string{r.name}
		perOrder := func(sec float64) string {
			if r.completed == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", sec*1000/float64(r.completed))
		}
		var attributed float64
		for _, g := range cpuGroups {
			row = append(row, perOrder(r.cpu.groups[g]))
			attributed += r.cpu.groups[g]
		}
		share := 0.0
		if r.cpu.capacity > 0 {
			share = 100 * r.cpu.busy / r.cpu.capacity
		}
		row = append(row, perOrder(r.cpu.busy-attributed), perOrder(r.cpu.busy),
			fmt.Sprintf("%.1f / %.1f (%.0f%%)", r.cpu.busy, r.cpu.capacity, share))
		t.rows = append(t.rows, row)
	}
	return t
}

func ms(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(loadgen.Percentile(sorted, p))/float64(time.Millisecond))
}

// dur formats d in milliseconds.
func dur(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func outcomes(m map[orderv1.OrderStatus]int) string {
	var parts []string
	for _, s := range []orderv1.OrderStatus{orderv1.OrderStatus_ORDER_STATUS_CONFIRMED,
		orderv1.OrderStatus_ORDER_STATUS_PAYMENT_FAILED, orderv1.OrderStatus_ORDER_STATUS_CANCELLED} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(s.String(), "ORDER_STATUS_"), m[s]))
		}
	}
	return strings.Join(parts, ", ")
}

// plural is n things, spelled for n.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
