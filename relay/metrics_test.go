package relay

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/netaddr"

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

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // test against loopback
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthReadyAndMetricsEndpoints(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.Metrics = "127.0.0.1:0" })
	base := "http://" + s.MetricsAddr()
	if code, _ := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := httpStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d before draining", code)
	}
	rc := newRawClient(t, s.udpAddr(t, netaddr.IPv6), "alice", "secret")
	if _, code := rc.request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatal(code)
	}
	_, body := httpStatus(t, base+"/metrics")
	for _, want := range []string{
		`isthmus_relay_allocations{client_family="ip6",family="ip4"} 1`,
		`isthmus_relay_allocations_created_total{client_family="ip6",family="ip4"} 1`,
		`isthmus_relay_socket_buffer_bytes{kind="recv"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_ = s.Drain(ctx) // one allocation live: times out, stays draining
	if code, _ := httpStatus(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d while draining, want 503", code)
	}
	if code, _ := httpStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while draining, want 200", code)
	}
	if v := counterValue(t, s.metrics.draining); v != 1 {
		t.Errorf("draining gauge = %v", v)
	}
	// Deleting the allocation brings the gauge back to zero.
	if _, code := rc.request(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}); code != 0 {
		t.Fatal(code)
	}
	if err := s.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(t, s.metrics.allocations.WithLabelValues("ip6", "ip4")); v != 0 {
		t.Errorf("allocations gauge = %v after the allocation ended", v)
	}
}

// A peer datagram without a permission is dropped by pion; it must still be
// counted (no silent drop).
func TestNoPermissionDropIsCounted(t *testing.T) {
	s := startTestServer(t, nil)
	rc := newRawClient(t, s.udpAddr(t, netaddr.IPv4), "alice", "secret")
	resp, code := rc.request(stun.MethodAllocate, transportUDP())
	if code != 0 {
		t.Fatal(code)
	}
	relayed := relayedAddr(t, resp)
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for i := 0; i < 3; i++ {
		if _, err := stranger.WriteToUDPAddrPort([]byte("unsolicited"), relayed); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for gathered(t, s, "isthmus_relay_drops_total", "reason=no_permission") < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if v := gathered(t, s, "isthmus_relay_drops_total", "reason=no_permission"); v != 3 {
		t.Fatalf("drops{no_permission} = %v, want 3", v)
	}
	if v := gathered(t, s, "isthmus_relay_packets_total", "direction=peer_to_client", "family=ip4"); v != 3 {
		t.Errorf("packets{peer_to_client} = %v: the relay socket read them", v)
	}
}
