package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// recordConn is a relay socket that records what it is asked to send.
type recordConn struct {
	mu   sync.Mutex
	sent []netip.AddrPort
}

func (c *recordConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (c *recordConn) WriteTo(b []byte, a net.Addr) (int, error) {
	ap, _ := addrPortOfAddr(a)
	c.mu.Lock()
	c.sent = append(c.sent, ap)
	c.mu.Unlock()
	return len(b), nil
}
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv6loopback, Port: 50000} }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

// dualFixture is a gate with one dual allocation whose sockets are fakes.
type dualFixture struct {
	s    *Server
	ft   fiveTuple
	d    *dualAlloc
	sock *recordConn
	peer netip.AddrPort // permitted IPv6 peer, bound to channel 0x4005
}

func newDualFixture(t testing.TB) *dualFixture {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler), fwd: passThrough{}}
	var err error
	if s.metrics, err = newMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	s.limits.Store(&limits{})
	s.pool = newPortPools(50000, 50010, nil)
	s.gen = newAddrGenerator(nil, s.pool, sockBufs{}, s) // no relay IPs: nothing is bound
	s.gate = newGate(s, DefaultConfig())
	client := &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 40000}
	listener := &net.UDPAddr{IP: net.IPv6loopback, Port: 3478}
	ft := fiveTuple{proto: "udp", src: client, dst: listener, pc: &recordConn{}}
	sock := &recordConn{}
	primary := &relayConn{PacketConn: &recordConn{}, advertise: netip.MustParseAddrPort("127.0.0.1:50001")}
	tab := &s.gate.dual
	d := &dualAlloc{t: tab, tuple: ft.key(), src: client, dst: listener, proto: "UDP", ft: ft,
		primary: primary, primaryAddr: net.UDPAddrFromAddrPort(primary.advertise),
		sock: sock, relayed: netip.MustParseAddrPort("[::1]:50002"),
		perms: map[netip.Addr]time.Time{}, chans: map[uint16]dualChan{},
		pionChans: map[uint16]netip.AddrPort{}, pionPerms: map[netip.Addr]struct{}{},
		v4Until: time.Now().Add(time.Hour), v6Until: time.Now().Add(time.Hour), done: make(chan struct{})}
	d.relayAddr = net.UDPAddrFromAddrPort(d.relayed)
	close(d.done) // no reader goroutine here
	d.snap.Store(&dualSnap{})
	primary.dual.Store(d)
	tab.allocs.Store(d.tuple, d)
	tab.live.Add(1)
	peer := netip.MustParseAddrPort("[2001:db8::2]:6000")
	if !d.bind(0x4005, peer, time.Now()) {
		t.Fatal("bind")
	}
	return &dualFixture{s: s, ft: ft, d: d, sock: sock, peer: peer}
}

// FuzzDualGate feeds arbitrary client datagrams, as data and as the
// requests the gate handles for dual allocations, to a gate with one dual
// allocation. Nothing may panic, and the IPv6 socket may only ever send to
// IPv6 peers that have a permission.
func FuzzDualGate(f *testing.F) {
	peer := netip.MustParseAddrPort("[2001:db8::2]:6000")
	add := func(ms ...stun.Setter) {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, ms...)...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	xor := func(typ stun.AttrType, ap netip.AddrPort) stun.Setter { return xorAttr{typ, ap} }
	add(stun.NewType(stun.MethodSend, stun.ClassIndication), xor(stun.AttrXORPeerAddress, peer), rawAttr(stun.AttrData, []byte("x")))
	add(stun.NewType(stun.MethodSend, stun.ClassIndication), xor(stun.AttrXORPeerAddress, netip.MustParseAddrPort("[2001:db8::9]:1")), rawAttr(stun.AttrData, []byte("x")))
	add(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), xor(stun.AttrXORPeerAddress, peer),
		xor(stun.AttrXORPeerAddress, netip.MustParseAddrPort("192.0.2.1:7")))
	add(stun.NewType(stun.MethodChannelBind, stun.ClassRequest), xor(stun.AttrXORPeerAddress, netip.MustParseAddrPort("[2001:db8::3]:7")),
		rawAttr(stun.AttrChannelNumber, []byte{0x40, 0x06, 0, 0}))
	add(stun.NewType(stun.MethodRefresh, stun.ClassRequest), rawAttr(stun.AttrRequestedAddressFamily, []byte{2, 0, 0, 0}),
		rawAttr(stun.AttrLifetime, []byte{0, 0, 0, 0}))
	add(stun.NewType(stun.MethodRefresh, stun.ClassRequest), rawAttr(stun.AttrRequestedAddressFamily, []byte{1, 0, 0, 0}),
		rawAttr(stun.AttrLifetime, []byte{0, 0, 3, 0}))
	add(stun.NewType(stun.MethodAllocate, stun.ClassRequest), rawAttr(attrAdditionalAddressFamily, []byte{2, 0, 0, 0}))
	add(stun.NewType(stun.MethodAllocate, stun.ClassRequest), rawAttr(attrAdditionalAddressFamilyDraft, []byte{2}))
	f.Add([]byte{0x40, 0x05, 0x00, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x40, 0x05, 0xff, 0xff, 'a'})
	f.Add([]byte{0x40, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		fx := newDualFixture(t)
		tab := &fx.s.gate.dual
		key := []byte("0123456789abcdef")
		now := time.Now()
		var scratch stun.Message
		tab.clientData(b, fx.ft, &scratch)
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() == nil {
			switch m.Type.Method {
			case stun.MethodCreatePermission:
				tab.createPermission(m, fx.ft, key, now)
			case stun.MethodChannelBind:
				tab.channelBind(m, fx.ft, key, now)
			case stun.MethodRefresh:
				tab.refresh(m, fx.ft, key, now)
			case stun.MethodAllocate:
				tab.allocate(m, fx.ft, "u", key, now)
			}
			_ = tab.response(b)
			// Data sent after the requests: still only to permitted peers.
			tab.clientData(b, fx.ft, &scratch)
		}
		snap := fx.d.snap.Load()
		fx.sock.mu.Lock()
		defer fx.sock.mu.Unlock()
		for _, ap := range fx.sock.sent {
			if ap.Addr().Is4() {
				t.Fatalf("IPv6 relay socket sent to IPv4 peer %s", ap)
			}
			if !snap.permitted(ap.Addr()) && ap.Addr() != fx.peer.Addr() {
				t.Fatalf("IPv6 relay socket sent to %s without a permission", ap)
			}
		}
		tab.closeAll()
	})
}
