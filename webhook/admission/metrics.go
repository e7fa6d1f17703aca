package admission

import "github.com/prometheus/client_golang/prometheus"

// Results counted by Metrics.
const (
	resultMutated    = "mutated"
	resultUnchanged  = "unchanged"
	resultSkipped    = "skipped"
	resultError      = "error"
	resultBadRequest = "bad_request"
)

// Metrics counts admission outcomes. Request latency and totals per path come from
// controller-runtime's webhook server already.
type Metrics struct {
	reviews *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskpod_webhook_admission_reviews_total",
		Help: "Pod admission reviews handled, by result: mutated, unchanged (already complete), skipped (not selected), error (admitted unchanged), bad_request.",
	}, []string{"result"})}
	for _, r := range []string{resultMutated, resultUnchanged, resultSkipped, resultError, resultBadRequest} {
		m.reviews.WithLabelValues(r) // export zeros so rates work from the start
	}
	if reg != nil {
		if err := reg.Register(m.reviews); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observe(result string) {
	if m != nil {
		m.reviews.WithLabelValues(result).Inc()
	}
}
