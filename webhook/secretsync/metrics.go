package secretsync

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Results of one copy's sync, counted in taskpod_webhook_secret_sync_total.
const (
	resultCreated       = "created"
	resultUpdated       = "updated"
	resultUnchanged     = "unchanged"
	resultDeleted       = "deleted"
	resultRetained      = "retained"
	resultConflict      = "conflict"
	resultSourceMissing = "source_missing"
	resultSourceInvalid = "source_invalid"
	resultError         = "error"
)

// Metrics are the sync loop's Prometheus metrics.
type Metrics struct {
	syncs         *prometheus.CounterVec
	conflicts     prometheus.Gauge
	sourceMissing *prometheus.GaugeVec
	rotationLag   prometheus.Histogram
	copies        *copiesCollector
}

// NewMetrics creates the metrics and registers them with reg. reader is the cache the managed
// copies are counted from at scrape time.
func NewMetrics(reg prometheus.Registerer, reader client.Reader) (*Metrics, error) {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskpod_webhook_secret_sync_total",
			Help: "Sync operations on registry Secret copies, by result (created, updated, unchanged, deleted, retained, conflict, source_missing, source_invalid, error).",
		}, []string{"result"}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskpod_webhook_secret_conflicts",
			Help: "Namespaces holding a Secret of a synced name that taskpod-webhook does not own (left untouched).",
		}),
		sourceMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskpod_webhook_source_secret_unusable",
			Help: "1 while a source Secret is missing or of the wrong type; its copies are kept as they are.",
		}, []string{"source"}),
		rotationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "taskpod_webhook_secret_rotation_lag_seconds",
			Help:    "Time from seeing a source Secret's new content to updating a copy with it.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		copies: &copiesCollector{reader: reader, desc: prometheus.NewDesc("taskpod_webhook_managed_secret_copies",
			"Registry Secret copies managed by taskpod-webhook, by source.", []string{"source"}, nil)},
	}
	for _, r := range []string{resultCreated, resultUpdated, resultUnchanged, resultDeleted, resultRetained,
		resultConflict, resultSourceMissing, resultSourceInvalid, resultError} {
		m.syncs.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.syncs, m.conflicts, m.sourceMissing, m.rotationLag, m.copies} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// copiesCollector counts the managed copies in the cache when scraped, rather than keeping a
// second count that could drift from the truth.
type copiesCollector struct {
	reader client.Reader
	desc   *prometheus.Desc
}

func (c *copiesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *copiesCollector) Collect(ch chan<- prometheus.Metric) {
	var list corev1.SecretList
	if err := c.reader.List(context.Background(), &list, client.MatchingLabels{ManagedByLabel: ManagedByValue}); err != nil {
		return
	}
	bySource := map[string]int{}
	for i := range list.Items {
		bySource[list.Items[i].Annotations[SourceAnnotation]]++
	}
	for src, n := range bySource {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), src)
	}
}
