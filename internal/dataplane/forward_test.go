package dataplane

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

const (
	tClient   = "[2001:db8::10]:40000"
	tServer   = "[2001:db8::1]:3478"
	tRelay    = "192.0.2.1:50000"
	tPeer     = "198.51.100.7:6000"
	tPeerIP   = "198.51.100.7"
	tChannel  = 0x4001
	tClient2  = "192.0.2.99:40002"
	tServer4  = "192.0.2.1:3478"
	tRelay6   = "[2001:db8::1]:50002"
	tPeer6    = "[2001:db8::77]:7000"
	tPeer6IP  = "2001:db8::77"
	tChannel2 = 0x4FFF
)

// fixture: one IPv6 client through an IPv6 listener, relayed over IPv4
// (the mission's case), with a permission and a channel to one peer.
type fixture struct {
	*harness
	ln, relay       *Conn
	lnFake, rlyFake *fakeBatch
}

func newFixture(t *testing.T, cfg Config) *fixture {
	h := newHarness(t, cfg)
	f := &fixture{harness: h}
	f.ln, f.lnFake = h.conn(kindListener, tServer, "")
	f.relay, f.rlyFake = h.conn(kindRelay, tRelay, "")
	h.allocate(tClient, tServer, tRelay)
	h.permit(tClient, tServer, tRelay, tPeerIP, true)
	h.bind(tClient, tServer, tRelay, tPeer, tChannel, true)
	return f
}

func TestChannelDataBothWays(t *testing.T) {
	f := newFixture(t, Config{})
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)

	// RFC 8656 12.5: over UDP the ChannelData MAY be padded; the padding is
	// not relayed.
	f.lnFake.push(channelData(tChannel, []byte("hello"), 3), client)
	f.lnFake.push(channelData(tChannel, []byte("world!!!"), 0), client)
	f.serve(f.ln)
	got := f.rlyFake.take()
	if len(got) != 2 || string(got[0].data) != "hello" || string(got[1].data) != "world!!!" ||
		got[0].addr != peer || got[1].addr != peer {
		t.Fatalf("client to peer: got %+v, want hello and world!!! to %v", got, peer)
	}

	// Peer to client: 4-byte header, no padding over UDP.
	f.rlyFake.push([]byte("abc"), peer)
	f.serve(f.relay)
	out := f.lnFake.take()
	want := []byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c'}
	if len(out) != 1 || !bytes.Equal(out[0].data, want) || out[0].addr != client {
		t.Fatalf("peer to client: got %+v, want % x to %v", out, want, client)
	}

	st := f.p.Stats()
	// client IPv6 (1), relay IPv4 (0).
	if st.Packets[ClientToPeer][1][0] != 2 || st.Bytes[ClientToPeer][1][0] != 13 ||
		st.Packets[PeerToClient][1][0] != 1 || st.Bytes[PeerToClient][1][0] != 3 {
		t.Fatalf("stats: %+v", st)
	}
	if st.SlowListener != 0 || st.SlowRelay != 0 {
		t.Fatalf("bound channel traffic went to pion: %+v", st)
	}
	a := f.relay.alloc.Load()
	if a.dir[ClientToPeer].packets.Load() != 2 || a.dir[PeerToClient].bytes.Load() != 3 {
		t.Fatalf("per-allocation counters: c2p %d pkts, p2c %d bytes",
			a.dir[ClientToPeer].packets.Load(), a.dir[PeerToClient].bytes.Load())
	}
}

func TestPermissionAndChannelRemoval(t *testing.T) {
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)
	t.Run("RFC8656 9: expired permission stops both directions", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.permit(tClient, tServer, tRelay, tPeerIP, false)
		f.lnFake.push(channelData(tChannel, []byte("x"), 0), client)
		f.serve(f.ln)
		f.rlyFake.push([]byte("y"), peer)
		f.serve(f.relay)
		if out := f.rlyFake.take(); len(out) != 0 {
			t.Fatalf("client to peer forwarded without permission: %+v", out)
		}
		if out := f.lnFake.take(); len(out) != 0 {
			t.Fatalf("peer to client forwarded without permission: %+v", out)
		}
		if _, _, ok := readQueued(f.relay); ok {
			t.Fatal("unpermitted peer datagram handed to pion")
		}
		st := f.p.Stats()
		if st.Drops[DropNoPermission] != 1 || st.Drops[DropToUnpermittedPeer] != 1 {
			t.Fatalf("drops %v, want one no_permission (peer) and one to_unpermitted_peer (client)", st.Drops)
		}
		// client IPv6, relay IPv4; one byte
		if st.PeerUnpermittedPackets[1][0] != 1 || st.PeerUnpermittedBytes[1][0] != 1 {
			t.Fatalf("unpermitted peer datagrams %v / bytes %v", st.PeerUnpermittedPackets, st.PeerUnpermittedBytes)
		}
	})
	t.Run("RFC8656 11.6: unbound channel; permitted peer gets a Data indication", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.bind(tClient, tServer, tRelay, tPeer, tChannel, false)
		f.lnFake.push(channelData(tChannel, []byte("x"), 0), client)
		f.serve(f.ln)
		if out := f.rlyFake.take(); len(out) != 0 {
			t.Fatalf("forwarded on deleted channel: %+v", out)
		}
		f.rlyFake.push([]byte("to-client"), peer)
		f.serve(f.relay)
		out := f.lnFake.take()
		if len(out) != 1 || out[0].addr != client {
			t.Fatalf("client got %+v, want one Data indication", out)
		}
		from, data := decodeData(t, out[0].data)
		if from != peer || string(data) != "to-client" {
			t.Fatalf("Data indication from %v with %q, want from %v with to-client", from, data, peer)
		}
		if _, _, ok := readQueued(f.relay); ok {
			t.Fatal("datagram also handed to pion")
		}
		st := f.p.Stats()
		if st.Drops[DropNoChannel] != 1 || st.SlowRelay != 0 || st.Indications[PeerToClient] != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("deleted allocation", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.eh.OnAllocationDeleted(udpAddr(tClient), udpAddr(tServer), "UDP", "alice", "example.org")
		f.lnFake.push(channelData(tChannel, []byte("x"), 0), client)
		f.serve(f.ln)
		if out := f.rlyFake.take(); len(out) != 0 {
			t.Fatalf("forwarded after allocation deletion: %+v", out)
		}
		if d := f.p.Stats().Drops[DropNoAllocation]; d != 1 {
			t.Fatalf("no_allocation drops = %d, want 1", d)
		}
		f.rlyFake.push([]byte("late"), peer)
		f.serve(f.relay)
		if _, _, ok := readQueued(f.relay); !ok {
			t.Fatal("datagram on a relay socket without allocation must go to pion")
		}
	})
}

func TestBadInput(t *testing.T) {
	client := netip.MustParseAddrPort(tClient)
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	cases := []struct {
		name     string
		in       fakeDatagram
		toPion   bool
		drop     DropReason
		wantDrop bool
	}{
		{name: "empty datagram goes to pion", in: fakeDatagram{data: []byte{}}, toPion: true},
		{name: "one byte goes to pion", in: fakeDatagram{data: []byte{0x40}}, toPion: true},
		{name: "three bytes of a ChannelData header goes to pion", in: fakeDatagram{data: []byte{0x40, 0x01, 0}}, toPion: true},
		{name: "STUN request goes to pion", in: fakeDatagram{data: stun}, toPion: true},
		{name: "RFC8656 12: first bits 10 (0x8000) is not a channel", in: fakeDatagram{data: channelData(0x8000, []byte("x"), 0)}, toPion: true},
		{name: "RFC5766 11: unbound channel 0x5000 is a channel, dropped", in: fakeDatagram{data: channelData(0x5000, []byte("x"), 0)},
			drop: DropNoChannel, wantDrop: true},
		{name: "RFC8656 12: channel 0x3FFF is not a channel", in: fakeDatagram{data: channelData(0x3FFF, []byte("x"), 0)}, toPion: true},
		{name: "RFC8656 12.5: length beyond datagram is discarded",
			in: fakeDatagram{data: []byte{0x40, 0x01, 0x00, 0x10, 'a'}}, drop: DropMalformed, wantDrop: true},
		{name: "unbound channel number", in: fakeDatagram{data: channelData(0x4002, []byte("x"), 0)}, drop: DropNoChannel, wantDrop: true},
		{name: "truncated datagram", in: fakeDatagram{data: channelData(tChannel, []byte("x"), 0), trunc: true},
			drop: DropOversized, wantDrop: true},
		{name: "ChannelData from a stranger", in: fakeDatagram{data: channelData(tChannel, []byte("x"), 0),
			addr: netip.MustParseAddrPort("[2001:db8::66]:1")}, drop: DropNoAllocation, wantDrop: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			d := tc.in
			if !d.addr.IsValid() {
				d.addr = client
			}
			f.lnFake.mu.Lock()
			f.lnFake.in = append(f.lnFake.in, d)
			f.lnFake.mu.Unlock()
			f.serve(f.ln)
			if out := f.rlyFake.take(); len(out) != 0 {
				t.Fatalf("forwarded: %+v", out)
			}
			data, _, queued := readQueued(f.ln)
			if queued != tc.toPion || (queued && !bytes.Equal(data, d.data)) {
				t.Fatalf("to pion = %v (%q), want %v", queued, data, tc.toPion)
			}
			st := f.p.Stats()
			var total uint64
			for _, n := range st.Drops {
				total += n
			}
			if tc.wantDrop && (st.Drops[tc.drop] != 1 || total != 1) {
				t.Fatalf("drops %v, want one %v", st.Drops, tc.drop)
			}
			if !tc.wantDrop && total != 0 {
				t.Fatalf("unexpected drops %v", st.Drops)
			}
		})
	}
}

func TestBandwidthQuota(t *testing.T) {
	const limit = 100_000 // bytes/s, both directions together; burst one second
	f := newFixture(t, Config{BandwidthLimit: limit})
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)
	payload := make([]byte, 2000)
	for range 46 {
		f.lnFake.push(channelData(tChannel, payload, 0), client)
	}
	f.serve(f.ln)
	// 46 x 2000 = 92000 bytes pass; the peer's 8 x 2000 find 8000 left.
	for range RelayReadBatch {
		f.rlyFake.push(payload, peer)
	}
	f.serve(f.relay)
	if c2p, p2c := len(f.rlyFake.take()), len(f.lnFake.take()); c2p != 46 || p2c != 4 {
		t.Fatalf("forwarded %d to the peer and %d to the client, want 46 and 4", c2p, p2c)
	}
	if d := f.p.Stats().Drops[DropBandwidth]; d != RelayReadBatch-4 {
		t.Fatalf("quota drops = %d, want %d", d, RelayReadBatch-4)
	}
	// Half a (simulated) second later, 50000 bytes are back.
	f.w.begin()
	f.w.now += int64(time.Second / 2)
	for range 30 {
		f.lnFake.push(channelData(tChannel, payload, 0), client)
	}
	f.w.serveListener(f.ln)
	f.w.end()
	if n := len(f.rlyFake.take()); n != 25 {
		t.Fatalf("after half a second forwarded %d of 2000 bytes, want 25", n)
	}

	// A new limit applies to new allocations only.
	f.p.SetBandwidthLimit(0)
	if a := f.relay.alloc.Load(); a.limit != limit {
		t.Fatalf("live allocation's limit changed to %d", a.limit)
	}
	r2, _ := f.conn(kindRelay, "192.0.2.1:50001", "")
	f.allocate("[2001:db8::10]:40001", tServer, "192.0.2.1:50001")
	if a := r2.alloc.Load(); a.limit != 0 {
		t.Fatalf("new allocation's limit = %d after SetBandwidthLimit(0)", a.limit)
	}
}

func TestBandwidthFunc(t *testing.T) {
	limit := int64(5000)
	f := newFixture(t, Config{BandwidthFunc: func() int64 { return limit }})
	if a := f.relay.alloc.Load(); a.limit != 5000 {
		t.Fatalf("limit = %d, want 5000 from BandwidthFunc", a.limit)
	}
}

func TestBucketAccumulatesSmallRefills(t *testing.T) {
	// At 1500 B/s a 16 us tick earns a fraction of a byte; the elapsed time
	// must accumulate, not be lost at every packet.
	const rate = 1500
	var b bucket
	b.reset(0)
	if !b.allow(0, minQuotaBurst, rate) || b.allow(0, 1, rate) {
		t.Fatal("the burst should pass whole and leave nothing")
	}
	passed := 0
	const step int64 = 16384 // ns
	for now := step; now <= int64(time.Second); now += step {
		if b.allow(now, 1, rate) {
			passed++
		}
	}
	if passed < rate-1 || passed > rate {
		t.Fatalf("one second of one-byte packets at %d B/s passed %d", rate, passed)
	}
}

func TestSendBufferFullIsCounted(t *testing.T) {
	f := newFixture(t, Config{})
	peer := netip.MustParseAddrPort(tPeer)
	f.lnFake.accept = 1
	for range 3 {
		f.rlyFake.push([]byte("p"), peer)
	}
	f.serve(f.relay)
	if out := f.lnFake.take(); len(out) != 1 {
		t.Fatalf("sent %d, want 1", len(out))
	}
	if d := f.p.Stats().Drops[DropSendError]; d != 2 {
		t.Fatalf("send drops = %d, want 2", d)
	}
}

func TestBatchAcrossAllocations(t *testing.T) {
	// Two allocations on one listener address: their peers' datagrams leave
	// in one WriteBatch toward the clients.
	h := newHarness(t, Config{})
	ln, lnFake := h.conn(kindListener, tServer4, "")
	r1, r1Fake := h.conn(kindRelay, "192.0.2.1:50010", "")
	r2, r2Fake := h.conn(kindRelay, "[2001:db8::1]:50012", "203.0.113.9:50012")
	_ = ln
	h.allocate("192.0.2.50:1000", tServer4, "192.0.2.1:50010")
	h.allocate("192.0.2.51:1001", tServer4, "203.0.113.9:50012") // advertised address (1:1 NAT)
	h.permit("192.0.2.50:1000", tServer4, "192.0.2.1:50010", "198.51.100.1", true)
	h.bind("192.0.2.50:1000", tServer4, "192.0.2.1:50010", "198.51.100.1:9", 0x4000, true)
	h.permit("192.0.2.51:1001", tServer4, "203.0.113.9:50012", "2001:db8::9", true)
	h.bind("192.0.2.51:1001", tServer4, "203.0.113.9:50012", "[2001:db8::9]:9", 0x4000, true)
	r1Fake.push([]byte("one"), netip.MustParseAddrPort("198.51.100.1:9"))
	r2Fake.push([]byte("two"), netip.MustParseAddrPort("[2001:db8::9]:9"))
	h.w.begin()
	h.w.serveRelay(r1)
	h.w.serveRelay(r2)
	if n := len(lnFake.take()); n != 0 {
		t.Fatalf("sent %d before the end of the wake-up, want batching", n)
	}
	h.w.end()
	out := lnFake.take()
	if len(out) != 2 || out[0].addr.String() != "192.0.2.50:1000" || out[1].addr.String() != "192.0.2.51:1001" {
		t.Fatalf("batch toward clients: %+v", out)
	}
	st := h.p.Stats()
	if st.Packets[PeerToClient][0][0] != 1 || st.Packets[PeerToClient][0][1] != 1 {
		t.Fatalf("per-family counters: %+v", st.Packets)
	}
}

func TestTCPClientAllocationGoesToPion(t *testing.T) {
	h := newHarness(t, Config{})
	r, rFake := h.conn(kindRelay, tRelay, "")
	tcpClient := &net.TCPAddr{IP: net.ParseIP("192.0.2.5"), Port: 4000}
	tcpServer := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 3478}
	h.eh.OnAllocationCreated(tcpClient, tcpServer, "UDP", "alice", "example.org", udpAddr(tRelay), 0)
	h.eh.OnPermissionCreated(tcpClient, tcpServer, "UDP", "alice", "example.org", udpAddr(tRelay), net.ParseIP(tPeerIP))
	h.eh.OnChannelCreated(tcpClient, tcpServer, "UDP", "alice", "example.org", udpAddr(tRelay), udpAddr(tPeer), tChannel)
	rFake.push([]byte("for-tcp-client"), netip.MustParseAddrPort(tPeer))
	h.serve(r)
	if data, _, ok := readQueued(r); !ok || string(data) != "for-tcp-client" {
		t.Fatalf("TCP client's peer datagram: pion got %q (%v)", data, ok)
	}
}

func TestConnReadFromWriteTo(t *testing.T) {
	f := newFixture(t, Config{})
	from := netip.MustParseAddrPort("[2001:db8::20]:1234")
	f.lnFake.push([]byte{0x00, 0x01, 0x00, 0x00}, from)
	f.serve(f.ln)
	buf := make([]byte, 100)
	n, addr, err := f.ln.ReadFrom(buf)
	if err != nil || n != 4 || addr.String() != from.String() {
		t.Fatalf("ReadFrom = %d, %v, %v; want 4 bytes from %v", n, addr, err, from)
	}
	if _, err := f.ln.WriteTo([]byte("resp"), net.UDPAddrFromAddrPort(from)); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if out := f.lnFake.take(); len(out) != 1 || string(out[0].data) != "resp" || out[0].addr != from {
		t.Fatalf("WriteTo sent %+v", out)
	}

	// A deadline in the past unblocks a waiting reader.
	errc := make(chan error, 1)
	go func() {
		_, _, err := f.ln.ReadFrom(buf)
		errc <- err
	}()
	if err := f.ln.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadFrom after deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return after the deadline passed")
	}
	_ = f.ln.SetReadDeadline(time.Time{})

	// Close unblocks a waiting reader with net.ErrClosed.
	go func() {
		_, _, err := f.ln.ReadFrom(buf)
		errc <- err
	}()
	_ = f.ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return after Close")
	}
	if _, err := f.ln.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(from)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close: %v", err)
	}
}

func TestSlowQueueFull(t *testing.T) {
	f := newFixture(t, Config{QueueLen: 2})
	for range 5 {
		f.lnFake.push([]byte{0, 1, 0, 0}, netip.MustParseAddrPort(tClient))
	}
	f.serve(f.ln)
	st := f.p.Stats()
	if st.SlowListener != 2 || st.Drops[DropQueueFull] != 3 {
		t.Fatalf("slow %d, queue_full %d; want 2 and 3", st.SlowListener, st.Drops[DropQueueFull])
	}
}

// decodeData checks that b is a Data indication (RFC 8656 11.6) and
// returns its XOR-PEER-ADDRESS and DATA, decoded by pion/stun.
func decodeData(t *testing.T, b []byte) (netip.AddrPort, []byte) {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("not a STUN message: %v", err)
	}
	if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		t.Fatalf("type %v, want Data indication", m.Type)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
		t.Fatalf("XOR-PEER-ADDRESS: %v", err)
	}
	data, err := m.Get(stun.AttrData)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	ip, _ := netip.AddrFromSlice(xa.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port)), data
}

// sendInd builds a Send indication with pion/stun.
func sendInd(t testing.TB, peer netip.AddrPort, data []byte, extra ...stun.Setter) []byte {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		setterFunc(func(m *stun.Message) error {
			return stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
		})}
	if data != nil {
		setters = append(setters, setterFunc(func(m *stun.Message) error { m.Add(stun.AttrData, data); return nil }))
	}
	m, err := stun.Build(append(setters, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func TestSendIndication(t *testing.T) {
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)
	other := netip.MustParseAddrPort("198.51.100.99:7")
	cases := []struct {
		name     string
		msg      []byte
		forward  bool
		toPion   bool
		drop     DropReason
		wantDrop bool
	}{
		{name: "RFC8656 11.4: Send indication to a permitted peer is relayed",
			msg: sendInd(t, peer, []byte("hello")), forward: true},
		{name: "RFC8656 11.4: any port of a permitted IP is permitted",
			msg: sendInd(t, netip.AddrPortFrom(peer.Addr(), 9), []byte("hello")), forward: true},
		{name: "RFC8656 11.4: Send indication to an unpermitted peer is dropped",
			msg: sendInd(t, other, []byte("hello")), drop: DropToUnpermittedPeer, wantDrop: true},
		{name: "Send indication without DATA goes to pion",
			msg: sendInd(t, peer, nil), toPion: true},
		{name: "unknown comprehension-required attribute goes to pion",
			msg: sendInd(t, peer, []byte("x"), stun.RawAttribute{Type: 0x0005, Value: []byte{1, 2, 3, 4}}), toPion: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.lnFake.push(tc.msg, client)
			f.serve(f.ln)
			out := f.rlyFake.take()
			if tc.forward != (len(out) == 1) || len(out) > 1 {
				t.Fatalf("relayed %+v, want forwarded=%v", out, tc.forward)
			}
			if tc.forward && (string(out[0].data) != "hello" || out[0].addr.Addr() != peer.Addr()) {
				t.Fatalf("relayed %q to %v", out[0].data, out[0].addr)
			}
			if _, _, queued := readQueued(f.ln); queued != tc.toPion {
				t.Fatalf("to pion = %v, want %v", queued, tc.toPion)
			}
			st := f.p.Stats()
			if tc.wantDrop && st.Drops[tc.drop] != 1 {
				t.Fatalf("drops %v, want one %v", st.Drops, tc.drop)
			}
			if tc.forward && (st.Indications[ClientToPeer] != 1 || st.Packets[ClientToPeer][1][0] != 1) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A reloaded peer policy reaches live allocations: SetPeerFilter suspends
// the permissions it refuses (both directions stop at once, although pion
// still holds them), suspends permissions pion grants afterwards under the
// old policy, and restores them when a later filter allows the peer again.
func TestSetPeerFilter(t *testing.T) {
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)
	denyPeer := func(a netip.Addr) bool { return a != peer.Addr() }
	relayed := func(f *fixture) (toPeer, toClient int) {
		f.lnFake.push(channelData(tChannel, []byte("x"), 0), client)
		f.serve(f.ln)
		f.rlyFake.push([]byte("y"), peer)
		f.serve(f.relay)
		return len(f.rlyFake.take()), len(f.lnFake.take())
	}

	f := newFixture(t, Config{})
	if p, c := relayed(f); p != 1 || c != 1 {
		t.Fatalf("before the filter: relayed %d to the peer, %d to the client; want 1 and 1", p, c)
	}
	if n := f.p.SetPeerFilter(denyPeer); n != 1 {
		t.Fatalf("SetPeerFilter suspended %d permissions, want 1", n)
	}
	if p, c := relayed(f); p != 0 || c != 0 {
		t.Fatalf("denied peer: relayed %d to the peer, %d to the client; want none", p, c)
	}
	if _, _, ok := readQueued(f.relay); ok {
		t.Fatal("denied peer's datagram handed to pion")
	}
	st := f.p.Stats()
	if st.Drops[DropNoPermission] != 1 || st.Drops[DropToUnpermittedPeer] != 1 {
		t.Fatalf("drops %v, want one no_permission and one to_unpermitted_peer", st.Drops)
	}

	// A permission pion grants after the reload (its request passed the
	// old policy) is suspended too.
	f.permit(tClient, tServer, tRelay, tPeerIP, false)
	f.permit(tClient, tServer, tRelay, tPeerIP, true)
	if p, c := relayed(f); p != 0 || c != 0 {
		t.Fatalf("permission created under the filter: relayed %d/%d, want none", p, c)
	}

	// Allowed again: pion's permission (refreshed without an event) works.
	if n := f.p.SetPeerFilter(nil); n != 0 {
		t.Fatalf("SetPeerFilter(nil) suspended %d, want 0", n)
	}
	if p, c := relayed(f); p != 1 || c != 1 {
		t.Fatalf("allowed again: relayed %d to the peer, %d to the client; want 1 and 1", p, c)
	}

	// A permission pion deletes while suspended stays deleted.
	f.p.SetPeerFilter(denyPeer)
	f.permit(tClient, tServer, tRelay, tPeerIP, false)
	f.p.SetPeerFilter(nil)
	if p, c := relayed(f); p != 0 || c != 0 {
		t.Fatalf("permission deleted while suspended came back: relayed %d/%d", p, c)
	}
}

// TestRoundBudget: one round takes at most RoundBudget datagrams from the
// listeners and as many from the relay sockets (a relay socket's last read
// may overshoot by less than RelayReadBatch), then leaves the rest for the
// next round, so that a backlog in one direction does not hold up the other.
func TestRoundBudget(t *testing.T) {
	f := newFixture(t, Config{})
	client, peer := netip.MustParseAddrPort(tClient), netip.MustParseAddrPort(tPeer)
	total := RoundBudget + IdealBatchSize/2
	for range total {
		f.lnFake.push(channelData(tChannel, []byte("rtp"), 0), client)
		f.rlyFake.push([]byte("rtp"), peer)
	}
	f.w.begin()
	f.w.serveListener(f.ln)
	for range total { // the relay socket reported ready again and again
		f.w.serveRelay(f.relay)
	}
	f.w.end()
	toPeer, toClient := len(f.rlyFake.take()), len(f.lnFake.take())
	if toPeer != RoundBudget || toClient < RoundBudget || toClient >= RoundBudget+RelayReadBatch || !f.w.more {
		t.Fatalf("first round relayed %d to the peer and %d to the client (more %v), want %d and %d..%d, and more to come",
			toPeer, toClient, f.w.more, RoundBudget, RoundBudget, RoundBudget+RelayReadBatch-1)
	}
	f.w.more = false
	f.serve(f.ln)
	if got := len(f.rlyFake.take()); got != total-RoundBudget || f.w.more {
		t.Fatalf("second round relayed %d to the peer (more %v), want the last %d", got, f.w.more, total-RoundBudget)
	}
}
