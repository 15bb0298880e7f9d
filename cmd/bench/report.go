package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
)

func printTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tplaced\tcompleted\terrors\torders/s\tp50\tp95\tp99\tmax\toutcomes\t")
	for _, r := range results {
		rate := 0.0
		if r.elapsed > 0 {
			rate = float64(r.completed) / r.elapsed.Seconds()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.placed, r.completed, r.errors, rate,
			ms(percentile(r.latencies, 0.50)), ms(percentile(r.latencies, 0.95)),
			ms(percentile(r.latencies, 0.99)), ms(percentile(r.latencies, 1)), outcomes(r.outcomes))
	}
	tw.Flush()
	fmt.Fprintln(w, "\norders/s = orders that reached a final status / time from the first create to the last final status;")
	fmt.Fprintln(w, "latency = CreateOrder sent → final status seen on the order's WatchOrder stream.")
	for _, r := range results {
		if r.firstErr != nil {
			fmt.Fprintf(w, "%s: first error: %v\n", r.name, r.firstErr)
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

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
