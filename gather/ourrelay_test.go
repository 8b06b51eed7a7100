//go:build linux

package gather

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/relay"
)

// startOurRelay runs the Isthmus relay in-process on loopback (ephemeral
// ports, relay addresses of both families, loopback peers allowed) and
// closes it at cleanup.
func startOurRelay(t *testing.T) turnServer {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.Realm = testRealm
	cfg.Users = []string{testUser + ":" + testPass}
	cfg.AllowLoopbackPeers = true
	cfg.LogLevel = "error"
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	var ts turnServer
	for _, ap := range srv.ListenAddrs() {
		if ap.Addr().Is4() {
			ts.port4 = int(ap.Port())
		} else {
			ts.port6 = int(ap.Port())
		}
	}
	if ts.port4 == 0 || ts.port6 == 0 {
		t.Fatalf("relay listens on %v: want 127.0.0.1 and ::1", srv.ListenAddrs())
	}
	return ts
}
