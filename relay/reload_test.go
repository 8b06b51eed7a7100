package relay_test

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/relay"
)

// SIGHUP with a stricter peer policy: a live permission to a peer the new
// policy denies stops relaying at once, both ways, on the data plane and on
// pion's own path, while the allocation stays; allowing the peer again
// restores it. (Before, such a permission relayed until it expired.)
func TestReloadDenyStopsLivePermissions(t *testing.T) {
	for _, plane := range []string{"on", "off"} {
		t.Run("data plane "+plane, func(t *testing.T) {
			cfg := relay.DefaultConfig()
			cfg.DataPlane = relay.DataPlane(plane)
			cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
			cfg.Users = []string{"alice:secret"}
			cfg.AllowLoopbackPeers = true
			cfg.ListenerSockets = 2
			reg := prometheus.NewRegistry()
			srv, err := relay.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), reg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			_, rc, err := srvAllocate(t, srvListen(t, srv, netaddr.IPv6), netaddr.IPv6, netaddr.IPv4, "alice", "secret")
			if err != nil {
				t.Fatal(err)
			}
			peer := srvPeer(t, netaddr.IPv4) // on 127.0.0.1
			if err := srvExchange(t, rc, peer, "before"); err != nil {
				t.Fatal(err)
			}

			deny := cfg
			deny.DenyPeers = []string{"127.0.0.1/32"}
			if err := srv.Reload(deny); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			before := sumDrops(t, reg)
			if _, err := rc.WriteTo([]byte("to-denied-peer"), peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.WriteTo([]byte("from-denied-peer"), rc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if !waitUntil(5*time.Second, func() bool { return sumDrops(t, reg) >= before+2 }) {
				t.Fatalf("drops_total rose by %v, want 2 (one each way)", sumDrops(t, reg)-before)
			}
			// Both datagrams are counted as dropped; neither arrived.
			buf := make([]byte, 1500)
			_ = peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, _, err := peer.ReadFrom(buf); !isTimeout(err) {
				t.Fatalf("denied peer received %q (err %v)", buf[:n], err)
			}
			_ = rc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, _, err := rc.ReadFrom(buf); !isTimeout(err) {
				t.Fatalf("client received %q from a denied peer (err %v)", buf[:n], err)
			}
			if srv.Allocations() != 1 {
				t.Fatalf("Allocations() = %d after the reload, want 1", srv.Allocations())
			}

			if err := srv.Reload(cfg); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if err := srvExchange(t, rc, peer, "allowed-again"); err != nil {
				t.Fatalf("peer allowed again: %v", err)
			}
		})
	}
}

// sumDrops adds isthmus_relay_drops_total over every reason.
func sumDrops(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "isthmus_relay_drops_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
