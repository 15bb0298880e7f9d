package broker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	consumed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "ordersaga_events_consumed_total",
		Help: "Events taken from a queue, by queue, message type and outcome (ok, retried, requeued, dead_lettered).",
	}, []string{"queue", "type", "outcome"})
	handlerSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ordersaga_handler_duration_seconds",
		Help:    "Time to handle one batch of events, by queue.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
	}, []string{"queue"})
	batchSize = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ordersaga_handler_batch_size",
		Help:    "Events handled in one batch, by queue.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	}, []string{"queue"})
	published = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "ordersaga_events_published_total",
		Help: "Messages published, by exchange, message type and outcome (confirmed, nacked, returned, failed).",
	}, []string{"exchange", "type", "outcome"})
	deadLetterDepth = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ordersaga_dead_letter_depth",
		Help: "Messages waiting in a dead-letter queue.",
	}, []string{"queue"})
)
