package main

import (
	"context"
	"fmt"

	dto "github.com/prometheus/client_model/go"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// The histograms the report reads, labelled by queue. Only their names are relied on: they may
// move between packages.
const (
	batchMetric = "ordersaga_handler_batch_size"    // events per handled batch
	stageMetric = "ordersaga_stage_latency_seconds" // event occurred → its effect committed
)

// batchTotals is, per queue, the sum and count of a histogram's samples, over every replica of
// every service.
type batchTotals map[string]struct{ sum, count float64 }

// scrapeBatches reads the histogram name from /metrics of every replica. A replica whose page
// lacks it adds nothing; one that does not answer is an error, since its deltas would be wrong.
func scrapeBatches(ctx context.Context, s *stack.Stack, name string) (batchTotals, error) {
	totals := batchTotals{}
	for _, svc := range stack.Services {
		for r := range s.Replicas() {
			families, err := s.Metrics(ctx, svc, r)
			if err != nil {
				return nil, fmt.Errorf("metrics of %s-%d: %w", svc, r, err)
			}
			for _, m := range families[name].GetMetric() {
				h := m.GetHistogram()
				if h == nil {
					continue
				}
				q := label(m, "queue")
				t := totals[q]
				t.sum += h.GetSampleSum()
				t.count += float64(h.GetSampleCount())
				totals[q] = t
			}
		}
	}
	return totals, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// meanBatches is, per queue, the mean sample between two scrapes; a queue that handled no
// batch in between is absent.
func meanBatches(before, after batchTotals) map[string]float64 {
	means := map[string]float64{}
	for q, a := range after {
		b := before[q]
		if n := a.count - b.count; n > 0 {
			means[q] = (a.sum - b.sum) / n
		}
	}
	return means
}
