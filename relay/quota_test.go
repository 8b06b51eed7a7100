package relay

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// startTestServer runs a relay on loopback with ephemeral ports.
func startTestServer(t *testing.T, mutate func(*Config), opts ...Option) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.Users = []string{"alice:secret", "bob:builder"}
	cfg.AllowLoopbackPeers = true
	cfg.ListenerSockets = 2
	cfg.RecvBuffer, cfg.SendBuffer = 1<<18, 1<<18
	cfg.LogLevel = "warn"
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), prometheus.NewRegistry(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func (s *Server) udpAddr(t *testing.T, f netaddr.Family) netip.AddrPort {
	t.Helper()
	for _, a := range s.ListenAddrs() {
		if netaddr.FamilyOf(a.Addr()) == f {
			return a
		}
	}
	t.Fatalf("no %s listener in %v", f, s.ListenAddrs())
	return netip.AddrPort{}
}

// rawClient speaks TURN with hand-built messages (pion/stun does the
// encoding), for the cases pion's client cannot express (EVEN-PORT,
// RESERVATION-TOKEN, no REQUESTED-ADDRESS-FAMILY).
type rawClient struct {
	t          *testing.T
	c          *net.UDPConn
	server     *net.UDPAddr
	user, pass string
	realm      string
	nonce      string
	integrity  stun.MessageIntegrity
}

func newRawClient(t *testing.T, server netip.AddrPort, user, pass string) *rawClient {
	t.Helper()
	local := "127.0.0.1:0"
	if server.Addr().Is6() {
		local = "[::1]:0"
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, c: c, server: net.UDPAddrFromAddrPort(server), user: user, pass: pass}
}

func (rc *rawClient) roundTrip(m *stun.Message) *stun.Message {
	rc.t.Helper()
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := rc.c.WriteTo(m.Raw, rc.server); err != nil {
			rc.t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			_ = rc.c.SetReadDeadline(deadline)
			n, _, err := rc.c.ReadFrom(buf)
			if err != nil {
				break // retransmit
			}
			resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if resp.Decode() == nil && resp.TransactionID == m.TransactionID {
				return resp
			}
		}
	}
	rc.t.Fatalf("no response to %s", m.Type)
	return nil
}

// request sends an authenticated request, learning realm and nonce from a
// 401 first. It returns the response and its error code (0 on success).
func (rc *rawClient) request(method stun.Method, attrs ...stun.Setter) (*stun.Message, int) {
	rc.t.Helper()
	for try := 0; try < 3; try++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if rc.nonce != "" {
			setters = append(setters, stun.NewUsername(rc.user), stun.NewRealm(rc.realm), stun.NewNonce(rc.nonce), rc.integrity)
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			rc.t.Fatal(err)
		}
		resp := rc.roundTrip(m)
		if resp.Type.Class == stun.ClassSuccessResponse {
			return resp, 0
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(resp); err != nil {
			rc.t.Fatalf("error response without ERROR-CODE: %s", resp)
		}
		code := int(ec.Code)
		if (code == 401 && rc.nonce == "") || code == 438 {
			var n stun.Nonce
			var r stun.Realm
			if n.GetFrom(resp) != nil || r.GetFrom(resp) != nil {
				rc.t.Fatalf("%d without NONCE/REALM", code)
			}
			rc.nonce, rc.realm = n.String(), r.String()
			rc.integrity = stun.NewLongTermIntegrity(rc.user, rc.realm, rc.pass)
			continue
		}
		return resp, code
	}
	rc.t.Fatal("authentication loop")
	return nil, 0
}

func transportUDP() stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
}

func addressFamily(f byte) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{f, 0, 0, 0}}
}

func relayedAddr(t *testing.T, m *stun.Message) netip.AddrPort {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("no XOR-RELAYED-ADDRESS: %v", err)
	}
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port)) //nolint:gosec // a port
}

type setterFn func(*stun.Message) error

func (f setterFn) AddTo(m *stun.Message) error { return f(m) }

func peer(ap netip.AddrPort) stun.Setter {
	return setterFn(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

// RFC 8656 §7.2 rule 7 / §7.3: a user over user_quota gets 486, the relay
// over max_allocations gets 508.
func TestQuotaErrorCodesOnTheWire(t *testing.T) {
	s := startTestServer(t, func(c *Config) {
		c.UserQuota = 1
		c.MaxAllocations = 2
	})
	addr := s.udpAddr(t, netaddr.IPv6)
	if _, code := newRawClient(t, addr, "alice", "secret").request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatalf("alice's first allocation: %d", code)
	}
	if _, code := newRawClient(t, addr, "alice", "secret").request(stun.MethodAllocate, transportUDP()); code != 486 {
		t.Fatalf("alice's second allocation: %d, want 486 (Allocation Quota Reached)", code)
	}
	if _, code := newRawClient(t, addr, "bob", "builder").request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatalf("bob's first allocation: %d", code)
	}
	s.limits.Store(&limits{maxAllocations: 2, userQuota: 5})
	if _, code := newRawClient(t, addr, "bob", "builder").request(stun.MethodAllocate, transportUDP()); code != 508 {
		t.Fatalf("allocation beyond max_allocations: %d, want 508 (Insufficient Capacity)", code)
	}
	if v := counterValue(t, s.metrics.quotaRejections.WithLabelValues("user")); v != 1 {
		t.Errorf("user quota rejections = %v", v)
	}
	if v := counterValue(t, s.metrics.quotaRejections.WithLabelValues("total")); v != 1 {
		t.Errorf("total quota rejections = %v", v)
	}
}

// RFC 6156 §4.2: no REQUESTED-ADDRESS-FAMILY means IPv4, whatever family the
// client came over; a family without relay addresses gets 440.
func TestAllocateFamilies(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.RelayIPs = []string{"127.0.0.1"} })
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		rc := newRawClient(t, s.udpAddr(t, f), "alice", "secret")
		resp, code := rc.request(stun.MethodAllocate, transportUDP())
		if code != 0 || !relayedAddr(t, resp).Addr().Is4() {
			t.Errorf("%s client, no family: code %d", f, code)
		}
		if _, code := newRawClient(t, s.udpAddr(t, f), "alice", "secret").request(stun.MethodAllocate, transportUDP(), addressFamily(2)); code != 440 {
			t.Errorf("%s client asking IPv6 from an IPv4-only relay: %d, want 440", f, code)
		}
		if _, code := newRawClient(t, s.udpAddr(t, f), "alice", "secret").request(stun.MethodAllocate,
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}}); code != 442 {
			t.Errorf("%s client asking for a TCP relay: %d, want 442", f, code)
		}
	}
}

// RFC 8489 §9.2.4: a bad credential gets 401 (pion alone answers 400).
func TestBadCredentialsGet401(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.AuthSecrets = []string{"rest"} })
	addr := s.udpAddr(t, netaddr.IPv6)
	expired, expiredPass := RESTCredential("rest", "carol", time.Now().Add(-time.Minute))
	for _, tt := range []struct{ name, user, pass, reason string }{
		{"wrong password", "alice", "guess", authBadIntegrity},
		{"unknown user", "mallory", "x", authUnknownUser},
		{"expired REST username", expired, expiredPass, authExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(t, s.metrics.authFailures.WithLabelValues(tt.reason))
			_, code := newRawClient(t, addr, tt.user, tt.pass).request(stun.MethodAllocate, transportUDP())
			if code != 401 {
				t.Fatalf("got %d, want 401", code)
			}
			if after := counterValue(t, s.metrics.authFailures.WithLabelValues(tt.reason)); after != before+1 {
				t.Errorf("auth_failures{reason=%q} went %v -> %v", tt.reason, before, after)
			}
		})
	}
	user, pass := RESTCredential("rest", "carol", time.Now().Add(time.Hour))
	if _, code := newRawClient(t, addr, user, pass).request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatalf("valid REST credential: %d", code)
	}
}

// The RTCP pair: EVEN-PORT asks for an IPv6 relay, the RESERVATION-TOKEN
// allocation (from the client's next port, which may land on another
// per-core socket) must get port+1 on the same IPv6 address, and must be
// able to reach IPv6 peers (pion alone gave it IPv4, or an IPv4 family that
// refused IPv6 peers with 443).
func TestEvenPortReservationKeepsFamilyOnTheWire(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.ListenerSockets = 4 })
	for _, clientFam := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		for _, want := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
			t.Run(clientFam.String()+" client "+want.String()+" relay", func(t *testing.T) {
				server := s.udpAddr(t, clientFam)
				famAttr := byte(1)
				if want == netaddr.IPv6 {
					famAttr = 2
				}
				rtp := newRawClient(t, server, "alice", "secret")
				resp, code := rtp.request(stun.MethodAllocate, transportUDP(), addressFamily(famAttr),
					stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}})
				if code != 0 {
					t.Fatalf("EVEN-PORT allocation: %d", code)
				}
				first := relayedAddr(t, resp)
				tok, err := resp.Get(stun.AttrReservationToken)
				if err != nil {
					t.Fatal("no RESERVATION-TOKEN")
				}
				if first.Port()%2 != 0 || netaddr.FamilyOf(first.Addr()) != want {
					t.Fatalf("first relay %s: want an even port of %s", first, want)
				}
				// Several client sockets so that the SO_REUSEPORT hash sends
				// some to another listener socket than the first.
				rtcp := newRawClient(t, server, "alice", "secret")
				resp, code = rtcp.request(stun.MethodAllocate, transportUDP(),
					stun.RawAttribute{Type: stun.AttrReservationToken, Value: tok})
				if code != 0 {
					t.Fatalf("RESERVATION-TOKEN allocation: %d", code)
				}
				second := relayedAddr(t, resp)
				if second.Addr() != first.Addr() || second.Port() != first.Port()+1 {
					t.Fatalf("reserved relay %s, want %s port %d", second, first.Addr(), first.Port()+1)
				}
				peerIP := "127.0.0.1"
				if want == netaddr.IPv6 {
					peerIP = "::1"
				}
				if _, code := rtcp.request(stun.MethodCreatePermission, peer(netip.AddrPortFrom(netip.MustParseAddr(peerIP), 9))); code != 0 {
					t.Fatalf("permission to a %s peer on the reserved allocation: %d", want, code)
				}
				// RFC 6156 §4.2: the token and REQUESTED-ADDRESS-FAMILY together are 400.
				_, code = newRawClient(t, server, "alice", "secret").request(stun.MethodAllocate, transportUDP(),
					addressFamily(famAttr), stun.RawAttribute{Type: stun.AttrReservationToken, Value: tok})
				if code != 400 {
					t.Fatalf("token plus family: %d, want 400", code)
				}
			})
		}
	}
}

// Each allocation's bandwidth is capped; the excess is dropped and counted.
func TestAllocationBandwidthDrops(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.AllocationBandwidth = 2000 })
	peerConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peerConn.Close() })
	peerAP := peerConn.LocalAddr().(*net.UDPAddr).AddrPort()

	rc := newRawClient(t, s.udpAddr(t, netaddr.IPv4), "alice", "secret")
	if _, code := rc.request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	if _, code := rc.request(stun.MethodChannelBind, peer(peerAP),
		stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x00, 0, 0}}); code != 0 {
		t.Fatalf("channel bind: %d", code)
	}
	// 200 KB in a burst: far over the 64 KiB bucket at 2000 B/s.
	frame := make([]byte, 4+1000)
	frame[0], frame[1], frame[2], frame[3] = 0x40, 0x00, 0x03, 0xE8
	for i := 0; i < 200; i++ {
		if _, err := rc.c.WriteTo(frame, rc.server); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for gathered(t, s, "isthmus_relay_drops_total", "reason=bandwidth")+gathered(t, s, "isthmus_relay_packets_total", "direction=client_to_peer", "family=ip4") < 200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	drops := gathered(t, s, "isthmus_relay_drops_total", "reason=bandwidth")
	sent := gathered(t, s, "isthmus_relay_packets_total", "direction=client_to_peer", "family=ip4")
	if drops == 0 || sent == 0 || drops+sent != 200 {
		t.Fatalf("dropped %v, relayed %v of 200: want some of each, all accounted for", drops, sent)
	}
}

// Drain: new allocations get 508, existing ones keep working, and Drain
// returns when the last one ends.
func TestDrainRefusesNewAllocations(t *testing.T) {
	s := startTestServer(t, nil)
	addr := s.udpAddr(t, netaddr.IPv4)
	rc := newRawClient(t, addr, "alice", "secret")
	if _, code := rc.request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	done := make(chan error, 1)
	go func() { done <- s.Drain(t.Context()) }()
	deadline := time.Now().Add(5 * time.Second)
	for !s.draining.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, code := newRawClient(t, addr, "bob", "builder").request(stun.MethodAllocate, transportUDP()); code != 508 {
		t.Fatalf("allocation while draining: %d, want 508", code)
	}
	if _, code := rc.request(stun.MethodCreatePermission, peer(netip.MustParseAddrPort("127.0.0.1:9"))); code != 0 {
		t.Fatalf("existing allocation stopped working while draining: %d", code)
	}
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v with an allocation live", err)
	default:
	}
	// Refresh with LIFETIME 0 deletes the allocation.
	if _, code := rc.request(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}); code != 0 {
		t.Fatalf("refresh 0: %d", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the last allocation ended")
	}
}

func TestDrainTimeout(t *testing.T) {
	s := startTestServer(t, nil)
	if _, code := newRawClient(t, s.udpAddr(t, netaddr.IPv6), "alice", "secret").request(stun.MethodAllocate, transportUDP()); code != 0 {
		t.Fatal(code)
	}
	ctx, cancel := contextWithTimeout(t, 100*time.Millisecond)
	defer cancel()
	err := s.Drain(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 allocations still live") {
		t.Fatalf("Drain = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(s.cfg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: %v", err)
	}
}

// The derived total cap leaves fdReserve descriptors and the listeners out
// of RLIMIT_NOFILE and counts two descriptors per allocation; an unknown
// limit is no cap, a tiny one still serves one allocation.
func TestDescriptorCap(t *testing.T) {
	for _, c := range []struct {
		nofile    uint64
		listeners int
		want      int
	}{
		{0, 10, 0},
		{1024, 8, (1024 - 8 - fdReserve) / 2},
		{1 << 20, 40, (1<<20 - 40 - fdReserve) / 2},
		{100, 8, 1},
	} {
		if got := descriptorCap(c.nofile, c.listeners); got != c.want {
			t.Errorf("descriptorCap(%d, %d) = %d, want %d", c.nofile, c.listeners, got, c.want)
		}
	}
	s := startTestServer(t, func(c *Config) { c.MaxAllocations = 1 << 30 })
	if s.fdCap <= 0 || s.limits.Load().maxAllocations != s.fdCap {
		t.Errorf("max_allocations 2^30 with descriptor cap %d: effective %d, want the cap", s.fdCap, s.limits.Load().maxAllocations)
	}
}
