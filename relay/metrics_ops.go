package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// opsMetrics are the operational series kept apart from the data path's
// table in metrics.go: fleet redirects, build and reload state, port pool,
// kernel drops, allocation lifetimes, Binding and stream counts.
type opsMetrics struct {
	redirects  *prometheus.CounterVec
	collectors []prometheus.Collector
}

func newOpsMetrics(reg prometheus.Registerer) (*opsMetrics, error) {
	const ns, sub = "isthmus", "relay"
	m := &opsMetrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alternate_redirects_total",
			Help: "Allocates answered 300 Try Alternate (alternate_servers) instead of 486/508, by why this relay could not take them: draining, total (max_allocations), user (user_quota), ports."},
			[]string{"reason"}),
	}
	for _, r := range []string{redirectDraining, redirectTotal, redirectUser, redirectPorts} {
		m.redirects.WithLabelValues(r)
	}
	m.collectors = []prometheus.Collector{m.redirects}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *opsMetrics) unregister(reg prometheus.Registerer) {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		reg.Unregister(c)
	}
}
