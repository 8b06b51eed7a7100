package relay

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// No metric may carry a per-user label: REST usernames are unbounded.
func TestMetricsHaveNoUserLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 8 {
		t.Fatalf("only %d metric families", len(mfs))
	}
	for _, mf := range mfs {
		if got := mf.GetName(); len(got) < len("isthmus_relay_") || got[:len("isthmus_relay_")] != "isthmus_relay_" {
			t.Errorf("metric %s lacks the isthmus_relay_ prefix", got)
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "user", "username", "user_id", "realm":
					t.Errorf("metric %s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	// A second registration on the same registry is an error, not a panic.
	if _, err := newMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
