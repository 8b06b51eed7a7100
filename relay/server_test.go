package relay_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/relay"
)

func ExampleNew() {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"} // port 0: pick a free port
	cfg.Users = []string{"alice:secret"}
	cfg.ListenerSockets = 1
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	fmt.Println("listening on", srv.ListenAddrs()[0].Addr())
	fmt.Println("relaying from", srv.RelayIPs())
	// Output:
	// listening on 127.0.0.1
	// relaying from [127.0.0.1]
}

// srvStart runs a loopback relay for the tests in this file.
func srvStart(t *testing.T, users ...string) (*relay.Server, relay.Config) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.Users = users
	cfg.AllowLoopbackPeers = true
	cfg.ListenerSockets = 2
	cfg.RecvBuffer, cfg.SendBuffer = 1<<18, 1<<18
	srv, err := relay.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, cfg
}

func srvListen(t *testing.T, srv *relay.Server, f netaddr.Family) netip.AddrPort {
	t.Helper()
	for _, a := range srv.ListenAddrs() {
		if netaddr.FamilyOf(a.Addr()) == f {
			return a
		}
	}
	t.Fatalf("no %s listener", f)
	return netip.AddrPort{}
}

func srvLoopback(f netaddr.Family) string {
	if f == netaddr.IPv6 {
		return "[::1]:0"
	}
	return "127.0.0.1:0"
}

// srvAllocate allocates with pion/turn's client, asking for relayFam.
func srvAllocate(t *testing.T, server netip.AddrPort, clientFam, relayFam netaddr.Family, user, pass string) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp", srvLoopback(clientFam))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	raf := turn.RequestedAddressFamilyIPv4
	if relayFam == netaddr.IPv6 {
		raf = turn.RequestedAddressFamilyIPv6
	}
	return allocateOver(t, conn, server, raf, user, pass)
}

// srvExchange sends one datagram each way between the allocation and a
// plain UDP peer.
func srvExchange(t *testing.T, rc net.PacketConn, peer net.PacketConn, msg string) error {
	t.Helper()
	if _, err := rc.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil {
		return fmt.Errorf("peer read: %w", err)
	}
	if string(buf[:n]) != msg {
		return fmt.Errorf("peer got %q", buf[:n])
	}
	relayed := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	if got := from.(*net.UDPAddr).AddrPort(); got.Addr().Unmap() != relayed.Addr().Unmap() || got.Port() != relayed.Port() {
		return fmt.Errorf("peer saw %s, want the relayed address %s", got, relayed)
	}
	if _, err := peer.WriteTo([]byte("re:"+msg), from); err != nil {
		return err
	}
	_ = rc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err = rc.ReadFrom(buf)
	if err != nil {
		return fmt.Errorf("relay read: %w", err)
	}
	if string(buf[:n]) != "re:"+msg {
		return fmt.Errorf("client got %q", buf[:n])
	}
	return nil
}

func srvPeer(t *testing.T, f netaddr.Family) net.PacketConn {
	t.Helper()
	p, err := net.ListenPacket("udp", srvLoopback(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// pion/turn's own client, every client family against every relay family:
// the relayed address has the requested family and data flows both ways.
func TestPionClientBothFamilies(t *testing.T) {
	srv, _ := srvStart(t, "alice:secret")
	fams := []netaddr.Family{netaddr.IPv4, netaddr.IPv6}
	for _, cf := range fams {
		for _, rf := range fams {
			t.Run(cf.String()+" client to "+rf.String()+" peer", func(t *testing.T) {
				_, rc, err := srvAllocate(t, srvListen(t, srv, cf), cf, rf, "alice", "secret")
				if err != nil {
					t.Fatal(err)
				}
				relayed := rc.LocalAddr().(*net.UDPAddr).AddrPort()
				if got := netaddr.FamilyOf(relayed.Addr().Unmap()); got != rf {
					t.Fatalf("relayed address %s is %s, want %s", relayed, got, rf)
				}
				if err := srvExchange(t, rc, srvPeer(t, rf), "hello"); err != nil {
					t.Fatal(err)
				}
				if srv.Allocations() < 1 {
					t.Errorf("Allocations() = %d with an allocation live", srv.Allocations())
				}
			})
		}
	}
}

// SIGHUP semantics: Reload swaps users and peer policy without touching
// live allocations.
func TestReloadKeepsAllocations(t *testing.T) {
	srv, cfg := srvStart(t, "alice:secret", "carol:c")
	server := srvListen(t, srv, netaddr.IPv6)
	client, rc, err := srvAllocate(t, server, netaddr.IPv6, netaddr.IPv4, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	peer := srvPeer(t, netaddr.IPv4)
	if err := srvExchange(t, rc, peer, "before"); err != nil {
		t.Fatal(err)
	}

	next := cfg
	next.Users = []string{"alice:secret", "bob:b"}
	next.DenyPeers = []string{"127.0.0.2/32"}
	if err := srv.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if srv.Allocations() != 1 {
		t.Fatalf("Allocations() = %d after reload, want 1", srv.Allocations())
	}
	if err := srvExchange(t, rc, peer, "after"); err != nil {
		t.Fatalf("live allocation broken by reload: %v", err)
	}
	// The new policy applies to new permissions at once.
	if err := client.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}); err == nil {
		t.Error("permission to a peer the reloaded policy denies was granted")
	}
	if _, _, err := srvAllocate(t, server, netaddr.IPv6, netaddr.IPv4, "carol", "c"); err == nil {
		t.Error("removed user carol could still allocate")
	}
	if _, _, err := srvAllocate(t, server, netaddr.IPv6, netaddr.IPv4, "bob", "b"); err != nil {
		t.Errorf("added user bob cannot allocate: %v", err)
	}

	// Fields that need a restart are reported, the rest still applied.
	moved := next
	moved.Listen = []string{"127.0.0.1:1"}
	moved.UserQuota = 7
	err = srv.Reload(moved)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Reload with a new listen address: %v, want ErrRestartRequired naming listen", err)
	}
	if srv.ListenAddrs()[0].Port() == 1 {
		t.Error("listen address changed without a restart")
	}
}

// TURN over TLS (RFC 8656 §3.1): an IPv6 client over TLS gets an IPv4 relay.
func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := testcert.Loopback(t)
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"[::1]:0"}
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	cfg.Users = []string{"alice:secret"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.AllowLoopbackPeers = true
	cfg.ListenerSockets = 1
	srv, err := relay.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addrs := srv.ListenAddrs()
	if len(addrs) != 2 || addrs[1].Port() == addrs[0].Port() {
		t.Fatalf("ListenAddrs = %v, want the UDP/TCP address and a TLS address on another port", addrs)
	}
	tlsAddr := addrs[1]

	tc, err := tls.Dial("tcp", tlsAddr.String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	_, rc, err := allocateOver(t, turn.NewSTUNConn(tc), tlsAddr, turn.RequestedAddressFamilyIPv4, "alice", "secret")
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	if !rc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().Is4() {
		t.Fatalf("relayed %s, want IPv4", rc.LocalAddr())
	}
	if err := srvExchange(t, rc, srvPeer(t, netaddr.IPv4), "over tls"); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsUnbindableRelayIP(t *testing.T) {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Users = []string{"alice:secret"}
	cfg.RelayIPs = []string{"192.0.2.254"} // TEST-NET-1, not on this host
	srv, err := relay.New(cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		_ = srv.Close()
		t.Fatal("New accepted a relay IP the host does not have")
	}
	if !strings.Contains(err.Error(), "relay_ips:") {
		t.Fatalf("error %q does not name relay_ips", err)
	}
}

// Handler serves /metrics, /healthz and /readyz for a program that mounts
// it on its own HTTP server (Metrics left empty); /readyz turns 503 when
// the relay drains.
func TestHandler(t *testing.T) {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Users = []string{"alice:secret"}
	cfg.ListenerSockets = 1
	srv, err := relay.New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if srv.MetricsAddr() != "" {
		t.Fatalf("metrics server started although Metrics is empty: %s", srv.MetricsAddr())
	}
	h := srv.Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "isthmus_relay_allocations") {
		t.Errorf("/metrics = %d, without isthmus_relay_allocations:\n%.300s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
}
