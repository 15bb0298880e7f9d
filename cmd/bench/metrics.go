package main

import (
	"context"
	"fmt"

	dto "github.com/prometheus/client_model/go"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// The histograms the report reads. Only their names and labels are relied on: they may move
// between packages.
const (
	batchMetric = "ordersaga_handler_batch_size"    // events per handled batch, by queue
	stageMetric = "ordersaga_stage_latency_seconds" // event occurred → its effect committed, by queue
	waitMetric  = "ordersaga_stage_wait_seconds"    // event occurred → its unit of work began, by queue
	relayMetric = "ordersaga_outbox_relay_seconds"  // event written to the outbox → published, by routing key
	unitMetric  = "ordersaga_unit_of_work_events"   // events per committed unit of work, by service
)

// histograms are the metrics scraped around each scenario, with the label that tells their
// series apart.
var histograms = map[string]string{batchMetric: "queue", stageMetric: "queue", waitMetric: "queue", relayMetric: "routing_key", unitMetric: "service"}

// totals is, per histogram and label value, the sum and count of its samples, over every
// replica of every service.
type totals map[string]map[string]struct{ sum, count float64 }

// scrapeHistograms reads the histograms from /metrics of every replica. A replica whose page
// lacks one adds nothing to it; one that does not answer is an error, since its deltas would be
// wrong.
func scrapeHistograms(ctx context.Context, s *stack.Stack) (totals, error) {
	out := totals{}
	for _, svc := range stack.Services {
		for r := range s.Replicas() {
			families, err := s.Metrics(ctx, svc, r)
			if err != nil {
				return nil, fmt.Errorf("metrics of %s-%d: %w", svc, r, err)
			}
			for name, by := range histograms {
				if out[name] == nil {
					out[name] = map[string]struct{ sum, count float64 }{}
				}
				for _, m := range families[name].GetMetric() {
					h := m.GetHistogram()
					if h == nil {
						continue
					}
					v := label(m, by)
					t := out[name][v]
					t.sum += h.GetSampleSum()
					t.count += float64(h.GetSampleCount())
					out[name][v] = t
				}
			}
		}
	}
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// means is, per histogram and label value, the mean sample between two scrapes; a series with
// no sample in between is absent.
func means(before, after totals) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for name, series := range after {
		out[name] = map[string]float64{}
		for v, a := range series {
			b := before[name][v]
			if n := a.count - b.count; n > 0 {
				out[name][v] = (a.sum - b.sum) / n
			}
		}
	}
	return out
}
