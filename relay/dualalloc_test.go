package relay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/relay"
)

// RFC 8656 §18.11, §18.12, and the draft code points coturn 4.6.1 uses.
const (
	attrAAF           stun.AttrType = 0x8000
	attrAddrErr       stun.AttrType = 0x8001
	attrAAFDraft      stun.AttrType = 0x8032
	attrAddrErrDraft  stun.AttrType = 0x8033
	codeFamilyMissing               = 440
	codeCapacity                    = 508
	codePeerMismatch                = 443
)

// additionalFamily is ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11), laid out
// like REQUESTED-ADDRESS-FAMILY.
func additionalFamily(typ stun.AttrType, f byte) stun.Setter { return attr(typ, f, 0, 0, 0) }

// relayedAddrs returns every XOR-RELAYED-ADDRESS of m, in order.
func relayedAddrs(t testing.TB, m *stun.Message) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORRelayedAddress {
			continue
		}
		tmp := &stun.Message{TransactionID: m.TransactionID}
		tmp.Add(a.Type, a.Value)
		ap, err := xorAddr(tmp, a.Type)
		if err != nil {
			t.Fatalf("XOR-RELAYED-ADDRESS % x: %v", a.Value, err)
		}
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out
}

// splitFamilies returns the IPv4 and IPv6 relayed addresses of a response
// and fails unless it has exactly one of each.
func splitFamilies(t testing.TB, m *stun.Message) (v4, v6 netip.AddrPort) {
	t.Helper()
	addrs := relayedAddrs(t, m)
	for _, a := range addrs {
		if a.Addr().Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	if len(addrs) != 2 || !v4.IsValid() || !v6.IsValid() {
		t.Fatalf("RFC8656 7.3: dual Allocate response XOR-RELAYED-ADDRESS %v, want one IPv4 and one IPv6 (%s)", addrs, describe(m))
	}
	return v4, v6
}

// addressError returns the ADDRESS-ERROR-CODE value of type typ in m.
func addressError(m *stun.Message, typ stun.AttrType) ([]byte, bool) {
	v, err := m.Get(typ)
	return v, err == nil
}

// dualSession is a client with a dual allocation and a peer of each family.
type dualSession struct {
	t      *testing.T
	c      *stunClient
	stream bool
	r4, r6 netip.AddrPort
	p4, p6 *udpPeer
}

func newDualSession(t *testing.T, r *testRelay, network, clientFam string) *dualSession {
	t.Helper()
	c := dialSTUN(t, network, r.addr(clientFam), testUser, testPassword)
	res := c.allocate(additionalFamily(attrAAF, famIPv6))
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate with ADDITIONAL-ADDRESS-FAMILY: %s", describe(res))
	}
	if _, ok := addressError(res, attrAddrErr); ok {
		t.Errorf("ADDRESS-ERROR-CODE in a response granting both families: %s", res)
	}
	s := &dualSession{t: t, c: c, stream: network == "tcp",
		p4: listenPeer(t, "127.0.0.1:0"), p6: listenPeer(t, "[::1]:0")}
	s.r4, s.r6 = splitFamilies(t, res)
	return s
}

func (s *dualSession) channelData(ch uint16, payload []byte) []byte {
	b := channelData(ch, payload)
	if s.stream { // RFC 8656 §12.5: padded over TCP
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// expectAtPeer waits for payload at p from the relayed address from.
func expectAtPeer(t *testing.T, p *udpPeer, payload string, from netip.AddrPort) {
	t.Helper()
	got, src, err := p.readFrom()
	if err != nil || string(got) != payload || src != from {
		t.Fatalf("peer %s got %q from %s (%v), want %q from %s", p.addr(), got, src, err, payload, from)
	}
}

// expectData waits for a Data indication from peer carrying payload.
func (s *dualSession) expectData(peer netip.AddrPort, payload string) {
	s.t.Helper()
	b := s.c.readMessage(s.t, func(b []byte) bool { return stun.IsMessage(b) })
	msg := &stun.Message{Raw: b}
	if err := msg.Decode(); err != nil {
		s.t.Fatal(err)
	}
	from, err := xorAddr(msg, stun.AttrXORPeerAddress)
	data, _ := msg.Get(stun.AttrData)
	if msg.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || err != nil ||
		netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != peer || string(data) != payload {
		s.t.Fatalf("RFC8656 11.6: got %v from %s (%v) %q, want Data indication from %s %q", msg.Type, from, err, data, peer, payload)
	}
}

// expectChannel waits for ChannelData on ch carrying payload.
func (s *dualSession) expectChannel(ch uint16, payload string) {
	s.t.Helper()
	b := s.c.readMessage(s.t, func(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 })
	num, got, err := parseChannelData(b)
	if err != nil || num != ch || string(got) != payload {
		s.t.Fatalf("RFC8656 12.6: got ChannelData 0x%04x %q (%v), want 0x%04x %q", num, got, err, ch, payload)
	}
	if s.stream && len(b)%4 != 0 {
		s.t.Errorf("RFC8656 12.5: ChannelData of %d bytes over TCP, not padded", len(b))
	}
}

func (s *dualSession) mustSucceed(method stun.Method, attrs ...stun.Setter) *stun.Message {
	s.t.Helper()
	res := s.c.request(method, attrs...)
	if res.Type.Class != stun.ClassSuccessResponse {
		s.t.Fatalf("%v: got %s, want success", method, describe(res))
	}
	return res
}

// exerciseBothFamilies relays data both ways through each family of the
// dual allocation: Send/Data indications, then channels.
func (s *dualSession) exerciseBothFamilies() {
	t := s.t
	// One CreatePermission with a peer of each family (RFC 8656 §9.1).
	s.mustSucceed(stun.MethodCreatePermission, peerAddress(s.p4.addr()), peerAddress(s.p6.addr()))
	s.c.indication(stun.MethodSend, peerAddress(s.p6.addr()), dataAttr([]byte("send-6")))
	expectAtPeer(t, s.p6, "send-6", s.r6)
	s.c.indication(stun.MethodSend, peerAddress(s.p4.addr()), dataAttr([]byte("send-4")))
	expectAtPeer(t, s.p4, "send-4", s.r4)
	if _, err := s.p6.conn.WriteToUDPAddrPort([]byte("data-6"), s.r6); err != nil {
		t.Fatal(err)
	}
	s.expectData(s.p6.addr(), "data-6")
	if _, err := s.p4.conn.WriteToUDPAddrPort([]byte("data-4"), s.r4); err != nil {
		t.Fatal(err)
	}
	s.expectData(s.p4.addr(), "data-4")

	// Channels: one number space for both families (RFC 8656 §12).
	const ch4, ch6 = 0x4001, 0x4002
	s.mustSucceed(stun.MethodChannelBind, peerAddress(s.p6.addr()), channelNumber(ch6))
	s.mustSucceed(stun.MethodChannelBind, peerAddress(s.p4.addr()), channelNumber(ch4))
	if res := s.c.request(stun.MethodChannelBind, peerAddress(s.p4.addr()), channelNumber(ch6)); errorCode(res) != 400 {
		t.Errorf("RFC8656 12.2: IPv6 peer's channel rebound to an IPv4 peer: got %s, want 400", describe(res))
	}
	if res := s.c.request(stun.MethodChannelBind, peerAddress(s.p6.addr()), channelNumber(ch4)); errorCode(res) != 400 {
		t.Errorf("RFC8656 12.2: IPv4 peer's channel rebound to an IPv6 peer: got %s, want 400", describe(res))
	}
	if res := s.c.request(stun.MethodChannelBind, peerAddress(s.p6.addr()), channelNumber(0x4003)); errorCode(res) != 400 {
		t.Errorf("RFC8656 12.2: IPv6 peer bound to a second channel: got %s, want 400", describe(res))
	}
	// Refreshing a binding is a success.
	s.mustSucceed(stun.MethodChannelBind, peerAddress(s.p6.addr()), channelNumber(ch6))

	if err := s.c.write(s.channelData(ch6, []byte("chan-6"))); err != nil {
		t.Fatal(err)
	}
	expectAtPeer(t, s.p6, "chan-6", s.r6)
	if err := s.c.write(s.channelData(ch4, []byte("chan-4"))); err != nil {
		t.Fatal(err)
	}
	expectAtPeer(t, s.p4, "chan-4", s.r4)
	if _, err := s.p6.conn.WriteToUDPAddrPort([]byte("back-6"), s.r6); err != nil {
		t.Fatal(err)
	}
	s.expectChannel(ch6, "back-6")
	if _, err := s.p4.conn.WriteToUDPAddrPort([]byte("back-4"), s.r4); err != nil {
		t.Fatal(err)
	}
	s.expectChannel(ch4, "back-4")
}

// TestDualAllocation: ADDITIONAL-ADDRESS-FAMILY grants an IPv4 and an IPv6
// relayed address on one 5-tuple, and data flows through both, over UDP
// (with and without the data plane) and TCP.
func TestDualAllocation(t *testing.T) {
	for _, tc := range []struct {
		name, network, client string
		planeOff              bool
	}{
		{"udp4 client", "udp", "4", false},
		{"udp6 client", "udp", "6", false},
		{"udp4 client, no data plane", "udp", "4", true},
		{"tcp6 client", "tcp", "6", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *relay.Config) {
				if tc.planeOff {
					c.DataPlane = "off"
				}
			})
			s := newDualSession(t, r, tc.network, tc.client)
			s.exerciseBothFamilies()
			if n := r.srv.Allocations(); n != 1 {
				t.Errorf("Allocations() = %d, want 1 (a dual allocation is one allocation)", n)
			}
			s.c.release()
			waitAllocations(t, r.srv, 0)
			for _, ap := range []netip.AddrPort{s.r4, s.r6} {
				waitPortFree(t, ap)
			}
		})
	}
}

// TestDualAllocationDraftCodePoint: coturn 4.6.1's 0x8032 is accepted too.
func TestDualAllocationDraftCodePoint(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
	res := c.allocate(additionalFamily(attrAAFDraft, famIPv6))
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate with 0x8032: %s", describe(res))
	}
	splitFamilies(t, res)
	// The response is signed anew with the request's key.
	if err := stun.NewLongTermIntegrity(testUser, testRealm, testPassword).Check(res); err != nil {
		t.Errorf("dual Allocate response MESSAGE-INTEGRITY: %v", err)
	}

	// RFC 8489 §6.3.1: a retransmission gets the same two addresses.
	c2 := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
	c2.allocate(requestedFamily(0x07)) // learns a nonce (440)
	m, err := c2.build(stun.MethodAllocate, requestedTransportUDP(), additionalFamily(attrAAF, famIPv6))
	if err != nil {
		t.Fatal(err)
	}
	first, err := c2.roundTrip(m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c2.roundTrip(m)
	if err != nil {
		t.Fatal(err)
	}
	a4, a6 := splitFamilies(t, first)
	b4, b6 := splitFamilies(t, again)
	if a4 != b4 || a6 != b6 {
		t.Errorf("retransmitted Allocate: relayed %s %s, first answer %s %s", b4, b6, a4, a6)
	}
}

// TestDualAllocationRejects: RFC 8656 §7.2's 400s.
func TestDualAllocationRejects(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name  string
		attrs []stun.Setter
		want  int
	}{
		{"ADDITIONAL-ADDRESS-FAMILY IPv4", []stun.Setter{additionalFamily(attrAAF, famIPv4)}, 400},
		{"draft ADDITIONAL-ADDRESS-FAMILY IPv4", []stun.Setter{additionalFamily(attrAAFDraft, famIPv4)}, 400},
		{"with REQUESTED-ADDRESS-FAMILY IPv4", []stun.Setter{requestedFamily(famIPv4), additionalFamily(attrAAF, famIPv6)}, 400},
		{"with REQUESTED-ADDRESS-FAMILY IPv6", []stun.Setter{requestedFamily(famIPv6), additionalFamily(attrAAF, famIPv6)}, 400},
		{"with EVEN-PORT R", []stun.Setter{evenPort(true), additionalFamily(attrAAF, famIPv6)}, 400},
		{"with RESERVATION-TOKEN", []stun.Setter{reservationToken([]byte("12345678")), additionalFamily(attrAAF, famIPv6)}, 400},
		{"malformed", []stun.Setter{attr(attrAAF, famIPv6, 0)}, 400},
		{"unknown family", []stun.Setter{additionalFamily(attrAAF, 0x03)}, codeFamilyMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
			if res := c.allocate(tc.attrs...); errorCode(res) != tc.want {
				t.Errorf("got %s, want %d", describe(res), tc.want)
			}
		})
	}
	// EVEN-PORT without R is fine: the IPv4 half gets the even port.
	c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
	res := c.allocate(evenPort(false), additionalFamily(attrAAF, famIPv6))
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("EVEN-PORT (R=0) with ADDITIONAL-ADDRESS-FAMILY: %s", describe(res))
	}
	splitFamilies(t, res)
}

// TestDualAllocationOneFamily: a family the relay cannot give is named in
// ADDRESS-ERROR-CODE (RFC 8656 §7.3) and the other is granted.
func TestDualAllocationOneFamily(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mutate   func(*relay.Config)
		aaf      stun.AttrType
		errType  stun.AttrType
		wantFam  byte
		wantCode int
	}{
		{"no IPv6 relay address", func(c *relay.Config) { c.RelayIPs = []string{"127.0.0.1"} }, attrAAF, attrAddrErr, famIPv6, codeFamilyMissing},
		{"no IPv6 relay address, draft code points", func(c *relay.Config) { c.RelayIPs = []string{"127.0.0.1"} }, attrAAFDraft, attrAddrErrDraft, famIPv6, codeFamilyMissing},
		{"no IPv4 relay address", func(c *relay.Config) { c.RelayIPs = []string{"::1"} }, attrAAF, attrAddrErr, famIPv4, codeFamilyMissing},
		{"no room for the IPv6 socket", func(c *relay.Config) { c.MaxAllocations = 1 }, attrAAF, attrAddrErr, famIPv6, codeCapacity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, tc.mutate)
			c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
			res := c.allocate(additionalFamily(tc.aaf, famIPv6))
			if res.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("got %s, want success with one relayed address", describe(res))
			}
			addrs := relayedAddrs(t, res)
			wantV4 := tc.wantFam == famIPv6
			if len(addrs) != 1 || addrs[0].Addr().Is4() != wantV4 {
				t.Errorf("XOR-RELAYED-ADDRESS %v, want one of the other family than %d", addrs, tc.wantFam)
			}
			v, ok := addressError(res, tc.errType)
			if !ok || len(v) < 4 {
				t.Fatalf("no ADDRESS-ERROR-CODE (%v) in %s", tc.errType, res)
			}
			// Family, reserved, class, number (RFC 8656 §18.12), then a reason.
			if v[0] != tc.wantFam || v[1] != 0 || int(v[2]&7)*100+int(v[3]) != tc.wantCode || len(v) == 4 {
				t.Errorf("ADDRESS-ERROR-CODE % x, want family %d code %d and a reason", v, tc.wantFam, tc.wantCode)
			}
			other := attrAddrErrDraft
			if tc.errType == attrAddrErrDraft {
				other = attrAddrErr
			}
			if _, ok := addressError(res, other); ok {
				t.Errorf("ADDRESS-ERROR-CODE under both code points: %s", res)
			}
			if err := stun.NewLongTermIntegrity(testUser, testRealm, testPassword).Check(res); err != nil {
				t.Errorf("MESSAGE-INTEGRITY: %v", err)
			}
		})
	}
}

// TestDualRefreshPerFamily: RFC 8656 §7.3: a Refresh with
// REQUESTED-ADDRESS-FAMILY refreshes or deletes only that family.
func TestDualRefreshPerFamily(t *testing.T) {
	t.Run("delete IPv6 half", func(t *testing.T) {
		r := startRelay(t, nil)
		s := newDualSession(t, r, "udp", "4")
		s.mustSucceed(stun.MethodCreatePermission, peerAddress(s.p4.addr()), peerAddress(s.p6.addr()))
		res := s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv6), lifetime(0))
		if v, _ := res.Get(stun.AttrLifetime); !bytes.Equal(v, []byte{0, 0, 0, 0}) {
			t.Errorf("LIFETIME % x, want 0", v)
		}
		waitPortFree(t, s.r6)
		// The IPv4 half lives on; the IPv6 family is gone.
		s.c.indication(stun.MethodSend, peerAddress(s.p4.addr()), dataAttr([]byte("still-4")))
		expectAtPeer(t, s.p4, "still-4", s.r4)
		if res := s.c.request(stun.MethodRefresh, requestedFamily(famIPv6)); errorCode(res) != codePeerMismatch {
			t.Errorf("Refresh IPv6 after its deletion: got %s, want 443", describe(res))
		}
		if res := s.c.request(stun.MethodCreatePermission, peerAddress(s.p6.addr())); errorCode(res) != codePeerMismatch {
			t.Errorf("CreatePermission IPv6 after its deletion: got %s, want 443", describe(res))
		}
		s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv4), lifetime(300))
		s.c.release()
		waitAllocations(t, r.srv, 0)
	})
	t.Run("delete IPv4 half", func(t *testing.T) {
		r := startRelay(t, nil)
		s := newDualSession(t, r, "udp", "6")
		s.mustSucceed(stun.MethodCreatePermission, peerAddress(s.p4.addr()), peerAddress(s.p6.addr()))
		s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv4), lifetime(0))
		// The IPv4 relayed address relays nothing more, the IPv6 one does.
		if _, err := s.p4.conn.WriteToUDPAddrPort([]byte("to-dead-4"), s.r4); err != nil {
			t.Fatal(err)
		}
		s.c.indication(stun.MethodSend, peerAddress(s.p4.addr()), dataAttr([]byte("dead-4")))
		s.c.indication(stun.MethodSend, peerAddress(s.p6.addr()), dataAttr([]byte("alive-6")))
		expectAtPeer(t, s.p6, "alive-6", s.r6)
		if _, err := s.p6.conn.WriteToUDPAddrPort([]byte("data-6"), s.r6); err != nil {
			t.Fatal(err)
		}
		s.expectData(s.p6.addr(), "data-6") // not "to-dead-4", sent first
		if err := s.p4.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		if n, _, err := s.p4.conn.ReadFromUDPAddrPort(buf); err == nil {
			t.Errorf("IPv4 peer got %q through a deleted IPv4 relayed address", buf[:n])
		}
		for _, tc := range []struct {
			name   string
			method stun.Method
			attrs  []stun.Setter
		}{
			{"Refresh IPv4", stun.MethodRefresh, []stun.Setter{requestedFamily(famIPv4)}},
			{"CreatePermission IPv4", stun.MethodCreatePermission, []stun.Setter{peerAddress(s.p4.addr())}},
			{"ChannelBind IPv4", stun.MethodChannelBind, []stun.Setter{peerAddress(s.p4.addr()), channelNumber(0x4100)}},
		} {
			if res := s.c.request(tc.method, tc.attrs...); errorCode(res) != codePeerMismatch {
				t.Errorf("%s after the IPv4 half's deletion: got %s, want 443", tc.name, describe(res))
			}
		}
		// A Refresh of the IPv6 half answers with its own lifetime.
		res := s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv6), lifetime(1200))
		if v, _ := res.Get(stun.AttrLifetime); len(v) != 4 || binary.BigEndian.Uint32(v) != 1200 {
			t.Errorf("Refresh IPv6 LIFETIME % x, want 1200", v)
		}
		if err := stun.NewLongTermIntegrity(testUser, testRealm, testPassword).Check(res); err != nil {
			t.Errorf("Refresh response MESSAGE-INTEGRITY: %v", err)
		}
		// Deleting the last half ends the allocation.
		s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv6), lifetime(0))
		waitAllocations(t, r.srv, 0)
		waitPortFree(t, s.r4)
		waitPortFree(t, s.r6)
	})
	t.Run("refresh one family keeps the other", func(t *testing.T) {
		r := startRelay(t, nil)
		s := newDualSession(t, r, "udp", "4")
		res := s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv4), lifetime(900))
		if v, _ := res.Get(stun.AttrLifetime); len(v) != 4 || binary.BigEndian.Uint32(v) != 900 {
			t.Errorf("Refresh IPv4 LIFETIME % x, want 900", v)
		}
		res = s.mustSucceed(stun.MethodRefresh, lifetime(700))
		if v, _ := res.Get(stun.AttrLifetime); len(v) != 4 || binary.BigEndian.Uint32(v) != 700 {
			t.Errorf("Refresh LIFETIME % x, want 700", v)
		}
		s.exerciseBothFamilies()
	})
}

// TestDualAllocationCleanup: dual allocations that come and go leave no
// socket and no goroutine behind.
func TestDualAllocationCleanup(t *testing.T) {
	r := startRelay(t, nil)
	// One allocation first, so that lazily started machinery is counted in
	// the baseline.
	warm := newDualSession(t, r, "udp", "4")
	warm.c.release()
	waitAllocations(t, r.srv, 0)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	const rounds = 20
	for i := range rounds {
		s := newDualSession(t, r, "udp", "4")
		s.mustSucceed(stun.MethodCreatePermission, peerAddress(s.p6.addr()))
		switch i % 3 {
		case 0:
			s.c.release()
		case 1: // the IPv6 half first, then the rest
			s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv6), lifetime(0))
			s.c.release()
		case 2: // the IPv4 half first, then the IPv6 half
			s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv4), lifetime(0))
			s.mustSucceed(stun.MethodRefresh, requestedFamily(famIPv6), lifetime(0))
		}
		_ = s.c.conn.Close()
		_ = s.p4.conn.Close()
		_ = s.p6.conn.Close()
	}
	waitAllocations(t, r.srv, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, g := openFDs(t), runtime.NumGoroutine()
		if f <= fds && g <= goroutines+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d dual allocations: %d open descriptors (was %d), %d goroutines (was %d)", rounds, f, fds, g, goroutines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// waitAllocations waits until the relay reports n live allocations.
func waitAllocations(t testing.TB, srv *relay.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for srv.Allocations() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Allocations() = %d, want %d", srv.Allocations(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPortFree waits until the relayed address can be bound again: its
// socket is closed.
func waitPortFree(t testing.TB, ap netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relayed address %s still bound: %v", ap, fmt.Errorf("listen: %w", err))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
