package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// batchMetric is the histogram of events per handled batch, labelled by queue. Only its name
// is relied on: it may move between packages.
const batchMetric = "ordersaga_handler_batch_size"

// batchTotals is, per queue, the sum of batch sizes and the number of batches, over every
// replica of every service.
type batchTotals map[string]struct{ sum, count float64 }

// scrapeBatches reads /metrics of every replica. A replica whose page lacks the metric adds
// nothing; one that does not answer is an error, since its deltas would be wrong.
func scrapeBatches(ctx context.Context, s *stack.Stack) (batchTotals, error) {
	totals := batchTotals{}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, svc := range stack.Services {
		for r := range s.Replicas() {
			families, err := scrape(ctx, client, "http://"+s.OpsAddr(svc, r)+"/metrics")
			if err != nil {
				return nil, fmt.Errorf("metrics of %s-%d: %w", svc, r, err)
			}
			for _, m := range families[batchMetric].GetMetric() {
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

func scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// meanBatches is, per queue, the mean batch size between two scrapes; a queue that handled
// no batch in between is absent.
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
