package bench

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// startOurRelay runs our relay in process on both loopback families, with
// the test credentials and relay ports minPort..maxPort, and returns its
// IPv4 and IPv6 listening addresses.
func startOurRelay(tb testing.TB, minPort, maxPort int) (v4, v6 netip.AddrPort) {
	tb.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.Realm = testRealm
	cfg.Users = []string{testUser + ":" + testPass}
	cfg.AllowLoopbackPeers = true
	cfg.MinPort, cfg.MaxPort = minPort, maxPort
	cfg.UserQuota = 0 // every call of the load is the one test user
	cfg.Metrics = ""
	cfg.LogLevel = "warn"
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		tb.Fatalf("relay.New: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	for _, ap := range srv.ListenAddrs() {
		switch {
		case ap.Addr().Is4() && !v4.IsValid():
			v4 = ap
		case ap.Addr().Is6() && !v6.IsValid():
			v6 = ap
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		tb.Fatalf("relay listens on %v, want both loopback families", srv.ListenAddrs())
	}
	return v4, v6
}

// TestLoadAgainstIsthmusRelay runs the generator against our relay in
// process at a tiny load: both paths, exact packet counts, no loss,
// ChannelData in steady state.
func TestLoadAgainstIsthmusRelay(t *testing.T) {
	// Below the ephemeral range, away from DefaultMinPort used by the process tests.
	v4, v6 := startOurRelay(t, 30000, 30999)
	tr := runTinyLoad(t, v4, v6, testUser, testPass, testRealm, 5, time.Second)
	t.Logf("isthmus relay, 5 calls 1 s: up p50 %v p99 %v, down p50 %v p99 %v", tr.Up.P50, tr.Up.P99, tr.Down.P50, tr.Down.P99)
}
