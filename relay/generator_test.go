package relay

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

func TestPortPoolNoReuseAndExhaustion(t *testing.T) {
	now := time.Now()
	p := newPortPool(40000, 40003)
	seen := map[int]bool{}
	for i := 0; i < 4; i++ {
		port, err := p.take(now, 0)
		if err != nil {
			t.Fatal(err)
		}
		if port < 40000 || port > 40003 || seen[port] {
			t.Fatalf("take #%d = %d: outside the range or handed out twice", i, port)
		}
		seen[port] = true
	}
	if _, err := p.take(now, 0); !errors.Is(err, errPortsExhausted) {
		t.Fatalf("fifth take from four ports: %v, want errPortsExhausted", err)
	}
	p.release(40001)
	if port, err := p.take(now, 0); err != nil || port != 40001 {
		t.Fatalf("after release: %d, %v; want 40001", port, err)
	}
	if p.inUse() != 4 {
		t.Fatalf("inUse = %d", p.inUse())
	}
}

func TestPortPoolNextFitDelaysReuse(t *testing.T) {
	now := time.Now()
	p := newPortPool(40000, 40009)
	first, _ := p.take(now, 0)
	p.release(first)
	for i := 0; i < 9; i++ {
		port, err := p.take(now, 0)
		if err != nil {
			t.Fatal(err)
		}
		if port == first {
			t.Fatalf("port %d handed out again after %d others while %d were still free", first, i, 9-i)
		}
	}
}

func TestPortPoolLimit(t *testing.T) {
	now := time.Now()
	p := newPortPool(40000, 40009)
	if _, err := p.take(now, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.take(now, 1); !errors.Is(err, errPoolLimit) {
		t.Fatalf("second take with limit 1: %v", err)
	}
}

func TestPortPoolEvenPairAndHolds(t *testing.T) {
	now := time.Now()
	p := newPortPool(40001, 40006) // 40001 is odd: the pair must start even
	port, err := p.takeEvenPair(now)
	if err != nil {
		t.Fatal(err)
	}
	if port%2 != 0 {
		t.Fatalf("even pair starts at %d", port)
	}
	ip := netip.MustParseAddr("::1")
	if err := p.claim(port, ip, now, 0); err != nil {
		t.Fatalf("claim probe-held port: %v", err)
	}
	if !p.hold(port+1, ip, now, reservationHold) {
		t.Fatal("hold of the probe-held successor failed")
	}
	if got, ok := p.heldIP(port+1, now); !ok || got != ip {
		t.Fatalf("heldIP = %v, %v", got, ok)
	}
	if err := p.claim(port+1, netip.MustParseAddr("127.0.0.1"), now, 0); err == nil {
		t.Fatal("a port held for ::1 was claimed for 127.0.0.1")
	}
	// Ordinary takes skip held ports until the hold lapses.
	for {
		q, err := p.take(now, 0)
		if err != nil {
			break
		}
		if q == port+1 {
			t.Fatal("take handed out a held port")
		}
	}
	later := now.Add(reservationHold + time.Second)
	if _, ok := p.heldIP(port+1, later); ok {
		t.Fatal("hold did not lapse")
	}
	if q, err := p.take(later, 0); err != nil || q != port+1 {
		t.Fatalf("after the hold lapsed take = %d, %v; want %d", q, err, port+1)
	}
}

// genServer is the part of a Server the generator uses.
func genServer(t *testing.T, minPort, maxPort int, ips ...relayIP) (*Server, *addrGenerator) {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), fwd: passThrough{}}
	var err error
	if s.metrics, err = newMetrics(s.reg); err != nil {
		t.Fatal(err)
	}
	s.limits.Store(&limits{})
	s.pool = newPortPools(minPort, maxPort, ips)
	s.gen = newAddrGenerator(ips, s.pool, sockBufs{recv: 1 << 16, send: 1 << 16}, s)
	return s, s.gen
}

func loopbackRelayIPs() []relayIP {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	return []relayIP{{bind: v4, advertise: v4}, {bind: v6, advertise: v6}}
}

// freePortRange finds n consecutive ports nobody has bound on loopback now.
func freePortRange(t *testing.T, n int) (int, int) {
	t.Helper()
	for base := 41000 + int(time.Now().UnixNano()%2000)*4; base < 60000; base += n + 7 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, a := range []string{"127.0.0.1", "::1"} {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(a), uint16(p))))
				if err != nil {
					ok = false
					break
				}
				_ = c.Close()
			}
		}
		if ok {
			return base, base + n - 1
		}
	}
	t.Fatal("no free port range on loopback")
	return 0, 0
}

func allocate(t *testing.T, g *addrGenerator, conf turn.AllocateListenerConfig) (net.PacketConn, netip.AddrPort) {
	t.Helper()
	c, a, err := g.AllocatePacketConn(conf)
	if err != nil {
		t.Fatalf("AllocatePacketConn(%+v): %v", conf, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, a.(*net.UDPAddr).AddrPort()
}

func TestGeneratorFamilies(t *testing.T) {
	lo, hi := freePortRange(t, 8)
	_, g := genServer(t, lo, hi, loopbackRelayIPs()...)
	for _, tt := range []struct {
		network string
		want    netaddr.Family
	}{{"udp4", netaddr.IPv4}, {"udp6", netaddr.IPv6}} {
		c, a := allocate(t, g, turn.AllocateListenerConfig{Network: tt.network, UserID: "alice"})
		if got := netaddr.FamilyOf(a.Addr()); got != tt.want {
			t.Errorf("%s: relayed address %s is %s", tt.network, a, got)
		}
		if int(a.Port()) < lo || int(a.Port()) > hi {
			t.Errorf("%s: port %d outside %d..%d", tt.network, a.Port(), lo, hi)
		}
		bound := c.LocalAddr().(*net.UDPAddr).AddrPort()
		if bound.Port() != a.Port() || bound.Addr().Unmap() != a.Addr() {
			t.Errorf("%s: bound %s but advertised %s", tt.network, bound, a)
		}
	}
	if g.userCount("alice") != 2 {
		t.Errorf("userCount = %d, want 2", g.userCount("alice"))
	}
}

func TestGeneratorMissingFamily(t *testing.T) {
	lo, hi := freePortRange(t, 4)
	v4 := netip.MustParseAddr("127.0.0.1")
	_, g := genServer(t, lo, hi, relayIP{bind: v4, advertise: v4})
	if g.hasFamily(netaddr.IPv6) || !g.hasFamily(netaddr.IPv4) {
		t.Fatal("hasFamily wrong")
	}
	if _, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp6", UserID: "u"}); !errors.Is(err, ErrNoRelayFamily) {
		t.Fatalf("IPv6 with only IPv4 relays: %v", err)
	}
	if g.userCount("u") != 0 {
		t.Fatal("a failed allocation kept its quota")
	}
}

func TestGeneratorAdvertisesExternalIP(t *testing.T) {
	lo, hi := freePortRange(t, 4)
	v4 := netip.MustParseAddr("127.0.0.1")
	ext := netip.MustParseAddr("198.51.100.7")
	_, g := genServer(t, lo, hi, relayIP{bind: v4, advertise: ext})
	c, a := allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "u"})
	if a.Addr() != ext {
		t.Errorf("relayed address %s, want the advertised %s", a, ext)
	}
	if got := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); got != v4 {
		t.Errorf("bound on %s, want %s", got, v4)
	}
}

func TestGeneratorExhaustionAndRelease(t *testing.T) {
	lo, hi := freePortRange(t, 3)
	s, g := genServer(t, lo, hi, loopbackRelayIPs()...)
	var conns []net.PacketConn
	seen := map[uint16]bool{}
	for i := 0; i < 3; i++ {
		c, a := allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "u"})
		if seen[a.Port()] {
			t.Fatalf("port %d handed out twice", a.Port())
		}
		seen[a.Port()] = true
		conns = append(conns, c)
	}
	if _, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "u"}); !errors.Is(err, errPortsExhausted) {
		t.Fatalf("fourth allocation from three ports: %v", err)
	}
	if v := counterValue(t, s.metrics.quotaRejections.WithLabelValues("ports")); v != 1 {
		t.Errorf("ports rejections = %v, want 1", v)
	}
	// The IPv6 relay IP has its own three ports (one pool per relay IP).
	c6, _ := allocate(t, g, turn.AllocateListenerConfig{Network: "udp6", UserID: "u"})
	_ = c6.Close()
	_ = conns[1].Close()
	_ = conns[1].Close() // pion may close twice; the port comes back once
	if s.pool.inUse() != 2 || g.userCount("u") != 2 {
		t.Fatalf("after close: inUse %d, user count %d", s.pool.inUse(), g.userCount("u"))
	}
	allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "u"})
}

func TestGeneratorLimitsAndDrain(t *testing.T) {
	lo, hi := freePortRange(t, 6)
	s, g := genServer(t, lo, hi, loopbackRelayIPs()...)
	s.limits.Store(&limits{maxAllocations: 2, userQuota: 1})
	allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "alice"})
	if _, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice"}); !errors.Is(err, ErrUserQuota) {
		t.Fatalf("alice's second allocation: %v, want ErrUserQuota", err)
	}
	allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "bob"})
	if _, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "carol"}); !errors.Is(err, ErrCapacity) {
		t.Fatalf("third allocation with max_allocations 2: %v, want ErrCapacity", err)
	}
	s.limits.Store(&limits{})
	s.draining.Store(true)
	if _, _, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "carol"}); !errors.Is(err, ErrDraining) {
		t.Fatalf("allocation while draining: %v, want ErrDraining", err)
	}
}

// RFC 8656 §7.2 + RFC 6156 §4.2: the RESERVATION-TOKEN allocation gets the
// reserved port, port+1 of the EVEN-PORT allocation, on the same relay IP,
// even though pion asks for "udp4" (no REQUESTED-ADDRESS-FAMILY is allowed
// beside the token).
func TestGeneratorEvenPortReservationKeepsFamily(t *testing.T) {
	lo, hi := freePortRange(t, 10)
	_, g := genServer(t, lo, hi, loopbackRelayIPs()...)

	// pion's EVEN-PORT probe: no user, no port, always "udp4".
	probe, pa, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if err != nil {
		t.Fatal(err)
	}
	even := pa.(*net.UDPAddr).Port
	_ = probe.Close()
	if even%2 != 0 {
		t.Fatalf("probe gave odd port %d", even)
	}
	_, first := allocate(t, g, turn.AllocateListenerConfig{Network: "udp6", UserID: "alice", RequestedPort: even})
	if int(first.Port()) != even || !first.Addr().Is6() {
		t.Fatalf("EVEN-PORT allocation = %s, want [::1]:%d", first, even)
	}

	// Path 1: pion passes the odd port with the default family.
	_, second := allocate(t, g, turn.AllocateListenerConfig{Network: "udp4", UserID: "alice", RequestedPort: even + 1})
	if int(second.Port()) != even+1 || second.Addr() != first.Addr() {
		t.Fatalf("reservation allocation = %s, want %s port %d (the first allocation's family and IP)", second, first.Addr(), even+1)
	}
}

func TestGeneratorPendingReservation(t *testing.T) {
	lo, hi := freePortRange(t, 10)
	_, g := genServer(t, lo, hi, loopbackRelayIPs()...)
	now := time.Now()
	probe, pa, err := g.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if err != nil {
		t.Fatal(err)
	}
	_ = probe.Close()
	even := pa.(*net.UDPAddr).Port
	_, first := allocate(t, g, turn.AllocateListenerConfig{Network: "udp6", UserID: "alice", RequestedPort: even})

	// Path 2 (the request gate rewrote the request): no port, the right
	// family, and a pending reservation naming the port.
	g.expectReservation("alice", even+1, now)
	_, second := allocate(t, g, turn.AllocateListenerConfig{Network: "udp6", UserID: "alice"})
	if int(second.Port()) != even+1 || second.Addr() != first.Addr() {
		t.Fatalf("rewritten reservation allocation = %s, want %s port %d", second, first.Addr(), even+1)
	}
	// The pending entry is used once: the next allocation is ordinary.
	_, third := allocate(t, g, turn.AllocateListenerConfig{Network: "udp6", UserID: "alice"})
	if third.Port() == second.Port() || third.Port() == first.Port() {
		t.Fatalf("third allocation reused port %d", third.Port())
	}
}

func TestDetectRelayIPs(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	ifs := []netip.Addr{a("127.0.0.1"), a("::1"), a("192.0.2.10"), a("fe80::1"), a("2001:db8::10"), a("fd00::10"), a("169.254.1.1")}
	loOnly := []netip.Addr{a("127.0.0.1"), a("::1"), a("fe80::1")}
	tests := []struct {
		name     string
		listen   []netip.AddrPort
		ifs      []netip.Addr
		want     []netip.Addr
		fallback int
	}{
		{"specific listen addresses are the relay IPs", []netip.AddrPort{ap("127.0.0.1:3478"), ap("[::1]:3478")}, ifs,
			[]netip.Addr{a("127.0.0.1"), a("::1")}, 0},
		{"wildcard: usable interface addresses, never link-local or loopback", []netip.AddrPort{ap("0.0.0.0:3478"), ap("[::]:3478")}, ifs,
			nil, 0},
		{"wildcard on a loopback-only host falls back to loopback", []netip.AddrPort{ap("0.0.0.0:3478"), ap("[::]:3478")}, loOnly,
			[]netip.Addr{a("127.0.0.1"), a("::1")}, 2},
		{"only the families listened on", []netip.AddrPort{ap("[::1]:3478")}, ifs, []netip.Addr{a("::1")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fb := detectRelayIPs(tt.listen, tt.ifs)
			if tt.want == nil {
				// The usable set is decided by netaddr.IsUsableHost; check
				// the invariants rather than restate its table.
				if len(got) == 0 {
					t.Fatal("no relay IP detected")
				}
				for _, g := range got {
					if g.IsLoopback() || g.IsLinkLocalUnicast() || !netaddr.IsUsableHost(g, false) {
						t.Errorf("detected %s, which is not a usable host address", g)
					}
				}
			} else if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) || (len(got) > 1 && got[1] != tt.want[1]) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if len(fb) != tt.fallback {
				t.Errorf("loopback fallback for %v, want %d families", fb, tt.fallback)
			}
		})
	}
}

// recordingForwarder is a pass-through Forwarder that records what the
// relay hands it and in which order pion's events reach it and the relay.
type recordingForwarder struct {
	passThrough
	t                                    *testing.T
	listeners, relays, created, ownFirst atomic.Int32
	srv                                  atomic.Pointer[Server]
}

func (f *recordingForwarder) Listener(c *net.UDPConn) net.PacketConn { f.listeners.Add(1); return c }

func (f *recordingForwarder) Relay(c *net.UDPConn, advertised netip.AddrPort) net.PacketConn {
	if !advertised.IsValid() {
		f.t.Errorf("Relay: advertised address %v", advertised)
	}
	f.relays.Add(1)
	return c
}

func (f *recordingForwarder) Events(next turn.EventHandler) turn.EventHandler {
	h := next
	h.OnAllocationCreated = func(src, dst net.Addr, proto, user, realm string, relay net.Addr, port int) {
		if s := f.srv.Load(); s != nil && s.liveAllocations() != 0 {
			f.ownFirst.Add(1) // the relay's handler already ran
		}
		f.created.Add(1)
		if next.OnAllocationCreated != nil {
			next.OnAllocationCreated(src, dst, proto, user, realm, relay, port)
		}
	}
	return h
}

// A Forwarder given with WithForwarder sees every listener socket and every
// relay socket, and its Events handlers run before the relay's own.
func TestForwarderSeam(t *testing.T) {
	f := &recordingForwarder{t: t}
	s := startTestServer(t, func(c *Config) { c.ListenerSockets = 3 }, WithForwarder(f))
	f.srv.Store(s)
	if got := f.listeners.Load(); got != 6 {
		t.Errorf("Listener saw %d sockets, want 3 per listen address x 2", got)
	}
	if _, code := newRawClient(t, s.udpAddr(t, netaddr.IPv6), "alice", "secret").request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatal(code)
	}
	if f.relays.Load() != 1 || f.created.Load() != 1 {
		t.Errorf("Relay %d, OnAllocationCreated %d; want 1, 1", f.relays.Load(), f.created.Load())
	}
	if f.ownFirst.Load() != 0 {
		t.Error("the relay's own OnAllocationCreated ran before the Forwarder's")
	}
	if v := counterValue(t, s.metrics.allocations.WithLabelValues("ip6", "ip4")); v != 1 {
		t.Errorf("the relay's own handler did not run: gauge %v", v)
	}
}

// Auto-detection prefers global unicast: with a global address of the
// family on the host, a documentation address or a ULA next to it is not
// used (the peer policy calls those non-global). Only a host with no global
// address of the family gets its non-global ones, which pickRelayIPs
// reports. Before, every usable address was taken.
func TestDetectRelayIPsPrefersGlobal(t *testing.T) {
	a := netip.MustParseAddr
	wild := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3478"), netip.MustParseAddrPort("[::]:3478")}
	// Addresses only as data: nothing is bound or sent.
	ifs := []netip.Addr{a("127.0.0.1"), a("192.0.2.10"), a("10.0.0.5"), a("198.18.0.1"), a("9.9.9.9"),
		a("::1"), a("fd00::10"), a("2001:db8::10"), a("2606:4700::10"), a("fe80::1")}
	got, _ := detectRelayIPs(wild, ifs)
	if want := []netip.Addr{a("9.9.9.9"), a("2606:4700::10")}; !slices.Equal(got, want) {
		t.Errorf("with global addresses on the host: detected %v, want only the global %v", got, want)
	}
	got, _ = detectRelayIPs(wild, []netip.Addr{a("127.0.0.1"), a("10.0.0.5"), a("::1"), a("fd00::10")})
	if want := []netip.Addr{a("10.0.0.5"), a("fd00::10")}; !slices.Equal(got, want) {
		t.Errorf("with no global address: detected %v, want the non-global usable %v", got, want)
	}
	ng := nonGlobalRelayIPs([]relayIP{{bind: a("10.0.0.5"), advertise: a("10.0.0.5")},
		{bind: a("10.0.0.6"), advertise: a("9.9.9.9")}, {bind: a("fd00::10"), advertise: a("fd00::10")}})
	if len(ng) != 2 || ng[0].bind != a("10.0.0.5") || ng[1].bind != a("fd00::10") {
		t.Errorf("nonGlobalRelayIPs = %v, want the two advertised as non-global", ng)
	}
}

// strict_relay_ips refuses a relay IP advertised as a non-global address
// and names the field; an external_ips mapping to a global address passes.
func TestStrictRelayIPs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.RelayIPs = []string{"127.0.0.1"}
	cfg.Users = []string{"a:b"}
	cfg.ListenerSockets = 1
	cfg.StrictRelayIPs = true
	if s, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "strict_relay_ips") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("strict_relay_ips with a loopback relay IP: %v, want an error naming strict_relay_ips", err)
	}
	cfg.ExternalIPs = []string{"127.0.0.1=9.9.9.9"} // advertised only; nothing is sent there
	s, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("strict_relay_ips with external_ips to a global address: %v", err)
	}
	_ = s.Close()
}
