package stack

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsClient bounds a scrape: a replica that does not answer is an error, not a hang.
var metricsClient = &http.Client{Timeout: 5 * time.Second}

// Metrics scrapes a replica's /metrics, by metric family name.
func (s *Stack) Metrics(ctx context.Context, svc string, replica int) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.OpsAddr(svc, replica)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s-%d: %s", svc, replica, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}
