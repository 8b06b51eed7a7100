//go:build e2e

package kfp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// progFixture is a loaded program with one allocation per test channel.
type progFixture struct {
	u     *unitNet
	t     *Table
	chans map[string]Channel
}

// The channels of the program tests, one allocation each. Client side on
// "cli", peer side on "peer" (see unitNet).
var fixtureChannels = map[string]Channel{
	"v4>v4":       {Number: 0x4001, Client: mustAP("192.0.2.2:40000"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50000"), Peer: mustAP("198.51.100.2:6000")},
	"v6>v4":       {Number: 0x4002, Client: mustAP("[2001:db8::2]:40000"), Listener: mustAP("[2001:db8::1]:3478"), Relay: mustAP("198.51.100.1:50001"), Peer: mustAP("198.51.100.2:6001")},
	"v4>v6":       {Number: 0x4003, Client: mustAP("192.0.2.2:40001"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("[2001:db8:1::1]:50002"), Peer: mustAP("[2001:db8:1::2]:6002")},
	"v6>v6":       {Number: 0x7FFF, Client: mustAP("[2001:db8::2]:40001"), Listener: mustAP("[2001:db8::1]:3478"), Relay: mustAP("[2001:db8:1::1]:50003"), Peer: mustAP("[2001:db8:1::2]:6003")},
	"noneigh4":    {Number: 0x4005, Client: mustAP("192.0.2.2:40004"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50004"), Peer: mustAP("198.51.100.3:6004")},
	"noneigh6":    {Number: 0x4006, Client: mustAP("192.0.2.2:40005"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("[2001:db8:1::1]:50005"), Peer: mustAP("[2001:db8:1::3]:6005")},
	"unreachable": {Number: 0x4007, Client: mustAP("192.0.2.2:40006"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50006"), Peer: mustAP("198.51.100.99:6006")},
	"mtu4":        {Number: 0x4008, Client: mustAP("192.0.2.2:40007"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50007"), Peer: mustAP("198.51.100.77:6007")},
	"mtu6":        {Number: 0x4009, Client: mustAP("[2001:db8::2]:40008"), Listener: mustAP("[2001:db8::1]:3478"), Relay: mustAP("[2001:db8:1::1]:50008"), Peer: mustAP("[2001:db8:1::77]:6008")},
	"suspended":   {Number: 0x400A, Client: mustAP("192.0.2.2:40009"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50009"), Peer: mustAP("198.51.100.2:6009")},
	"stale":       {Number: 0x400B, Client: mustAP("192.0.2.2:40010"), Listener: mustAP("192.0.2.1:3478"), Relay: mustAP("198.51.100.1:50010"), Peer: mustAP("198.51.100.2:6010")},
}

func newProgFixture(t *testing.T) *progFixture {
	u := newUnitNet(t)
	f := &progFixture{u: u, t: newTestTable(t), chans: map[string]Channel{}}
	for name, ch := range fixtureChannels {
		a, err := f.t.NewAllocation()
		if err != nil {
			t.Fatal(err)
		}
		ch.Alloc = a
		if err := f.t.Install(ch); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.chans[name] = ch
	}
	if err := f.t.Suspend(f.chans["suspended"].Alloc); err != nil {
		t.Fatal(err)
	}
	// A newer generation in the slot than the entries carry.
	st := f.chans["stale"].Alloc
	if err := f.t.allocs.Put(st.slot, uint64(st.gen+7)<<1); err != nil {
		t.Fatal(err)
	}
	return f
}

// toRelay is a client's ChannelData to the listener, arriving on cli.
func (f *progFixture) fromClient(name string, data []byte) testFrame {
	ch := f.chans[name]
	return testFrame{dstMAC: [6]byte(f.u.cli.HardwareAddr), srcMAC: clientMAC, src: ch.Client, dst: ch.Listener,
		payload: channelData(ch.Number, data)}
}

// fromPeer is a peer's UDP datagram to the relayed address, on peer.
func (f *progFixture) fromPeer(name string, data []byte) testFrame {
	ch := f.chans[name]
	return testFrame{dstMAC: [6]byte(f.u.peer.HardwareAddr), srcMAC: peerMAC, src: ch.Peer, dst: ch.Relay, payload: data}
}

// rtp is a 172-byte voice payload (RTP header and 160 bytes of G.711).
func rtp(seq byte) []byte {
	b := make([]byte, 172)
	b[0], b[1], b[3] = 0x80, 0x00, seq
	for i := 12; i < len(b); i++ {
		b[i] = byte(i*7) ^ seq
	}
	return b
}

// TestProgramRelays checks every accepted branch: the four family
// combinations both ways, the output bytes field by field, and the IPv4
// header and UDP checksums recomputed here (RFC 1071).
func TestProgramRelays(t *testing.T) {
	f := newProgFixture(t)
	prog := f.t.Program()
	for _, name := range []string{"v4>v4", "v6>v4", "v4>v6", "v6>v6"} {
		ch := f.chans[name]
		for _, size := range []int{0, 1, 3, 172, 1200} {
			data := rtp(byte(size))[:min(size, 172)]
			if size > 172 {
				data = bytes.Repeat([]byte{0xA5, 0x5A, 0x01}, size/3)
			}
			t.Run(name+"/c2p/"+itoa(len(data)), func(t *testing.T) {
				before := mustStats(t, f.t)
				ret, out := f.u.run(t, prog, f.fromClient(name, data).bytes(), f.u.cli, 0)
				if ret != tcActRedirect {
					t.Fatalf("verdict %d, want TC_ACT_REDIRECT; passed %v", ret, passDelta(before, mustStats(t, f.t)))
				}
				p, err := checkFrame(out)
				if err != nil {
					t.Fatalf("output frame: %v\n% x", err, out)
				}
				wantFrame(t, p, ch.Relay, ch.Peer, data, peerMAC, [6]byte(f.u.peer.HardwareAddr))
				after := mustStats(t, f.t)
				cf, rf := famIdx(family(ch.Client)), famIdx(family(ch.Relay))
				if d := after.Packets[ClientToPeer][cf][rf] - before.Packets[ClientToPeer][cf][rf]; d != 1 {
					t.Errorf("packets counter +%d, want +1", d)
				}
				if d := after.Bytes[ClientToPeer][cf][rf] - before.Bytes[ClientToPeer][cf][rf]; d != uint64(len(data)) {
					t.Errorf("bytes counter +%d, want +%d", d, len(data))
				}
			})
			t.Run(name+"/p2c/"+itoa(len(data)), func(t *testing.T) {
				if len(data) < cdHdrLen {
					// Shorter peer datagrams are passed up (PassShort); see TestProgramPasses.
					t.Skip("payload shorter than a ChannelData header")
				}
				ret, out := f.u.run(t, prog, f.fromPeer(name, data).bytes(), f.u.peer, 0)
				if ret != tcActRedirect {
					t.Fatalf("verdict %d, want TC_ACT_REDIRECT", ret)
				}
				p, err := checkFrame(out)
				if err != nil {
					t.Fatalf("output frame: %v\n% x", err, out)
				}
				wantFrame(t, p, ch.Listener, ch.Client, channelData(ch.Number, data), clientMAC, [6]byte(f.u.cli.HardwareAddr))
			})
		}
	}
	// Allocation counters saw every relayed datagram.
	st, err := f.t.AllocStats(f.chans["v6>v4"].Alloc)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets[ClientToPeer] != 5 || st.Packets[PeerToClient] != 2 {
		t.Errorf("v6>v4 allocation counters %+v, want 5 c2p and 2 p2c packets (sizes 172 and 1200)", st)
	}
}

func wantFrame(t *testing.T, p parsedFrame, src, dst netip.AddrPort, payload []byte, dstMAC, srcMAC [6]byte) {
	t.Helper()
	if p.src != netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) || p.dst != netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()) {
		t.Errorf("addresses %s -> %s, want %s -> %s", p.src, p.dst, src, dst)
	}
	if !bytes.Equal(p.payload, payload) {
		t.Errorf("payload % x\nwant    % x", p.payload, payload)
	}
	if p.dstMAC != dstMAC || p.srcMAC != srcMAC {
		t.Errorf("MACs %s <- %s, want %s <- %s", net.HardwareAddr(p.dstMAC[:]), net.HardwareAddr(p.srcMAC[:]),
			net.HardwareAddr(dstMAC[:]), net.HardwareAddr(srcMAC[:]))
	}
	if p.ttl != defaultTTL || p.tos != 0 {
		t.Errorf("TTL %d TOS/class/flow %#x, want %d and 0", p.ttl, p.tos, defaultTTL)
	}
	if p.src.Addr().Is4() && p.flags != ip4FlagDF {
		t.Errorf("IPv4 flags %#x, want DF", p.flags)
	}
	if p.udpCheck == 0 {
		t.Errorf("UDP checksum 0 on a relayed datagram that had one")
	}
}

// TestProgramChecksums: an IPv4 datagram without checksum stays without
// (RFC 768) when it leaves as IPv4 and goes up when it would leave as IPv6;
// a wrong checksum stays wrong (the far end drops it).
func TestProgramChecksums(t *testing.T) {
	f := newProgFixture(t)
	prog := f.t.Program()

	fr := f.fromClient("v4>v4", rtp(1))
	fr.noChecksum = true
	ret, out := f.u.run(t, prog, fr.bytes(), f.u.cli, 0)
	if ret != tcActRedirect {
		t.Fatalf("v4 no checksum c2p: verdict %d", ret)
	}
	if p, err := checkFrame(out); err != nil || p.udpCheck != 0 {
		t.Errorf("v4 no checksum c2p: checksum %#x, err %v; want 0 carried over", p.udpCheck, err)
	}

	fr = f.fromPeer("v4>v4", rtp(2))
	fr.noChecksum = true
	if ret, out = f.u.run(t, prog, fr.bytes(), f.u.peer, 0); ret != tcActRedirect {
		t.Fatalf("v4 no checksum p2c: verdict %d", ret)
	}
	if p, err := checkFrame(out); err != nil || p.udpCheck != 0 {
		t.Errorf("v4 no checksum p2c: checksum %#x, err %v", p.udpCheck, err)
	}

	for _, name := range []string{"v4>v4", "v6>v4", "v4>v6", "v6>v6"} {
		for _, fr := range []testFrame{f.fromClient(name, rtp(3)), f.fromPeer(name, rtp(4))} {
			fr.badChecksum = true
			in := fr.bytes()
			dev := f.u.cli
			if fr.dst == f.chans[name].Relay {
				dev = f.u.peer
			}
			ret, out := f.u.run(t, prog, in, dev, 0)
			if ret != tcActRedirect {
				t.Fatalf("%s bad checksum: verdict %d", name, ret)
			}
			_, err := checkFrame(out)
			if err == nil || !strings.Contains(err.Error(), "UDP checksum") {
				t.Errorf("%s %s: a wrong checksum came out right (err %v)", name, fr.src, err)
			}
		}
	}
}

// TestProgramNeighbour: a next hop without neighbour entry goes through
// bpf_redirect_neigh, MACs untouched, counted as NeighResolve.
func TestProgramNeighbour(t *testing.T) {
	f := newProgFixture(t)
	for _, name := range []string{"noneigh4", "noneigh6"} {
		before := mustStats(t, f.t)
		in := f.fromClient(name, rtp(5))
		ret, out := f.u.run(t, f.t.Program(), in.bytes(), f.u.cli, 0)
		if ret != tcActRedirect {
			t.Fatalf("%s: verdict %d", name, ret)
		}
		p, err := checkFrame(out)
		if err != nil {
			t.Fatal(err)
		}
		ch := f.chans[name]
		wantFrame(t, p, ch.Relay, ch.Peer, rtp(5), in.dstMAC, in.srcMAC)
		if d := mustStats(t, f.t).NeighResolve - before.NeighResolve; d != 1 {
			t.Errorf("%s: NeighResolve +%d, want +1", name, d)
		}
	}
}

// TestProgramPasses checks every branch that hands a datagram to the
// stack: the verdict is TC_ACT_OK, the frame is unchanged, and exactly one
// reason counter rises.
func TestProgramPasses(t *testing.T) {
	f := newProgFixture(t)
	prog := f.t.Program()
	mod := func(fr testFrame, m func(*testFrame)) testFrame { m(&fr); return fr }
	cli, peer := f.u.cli, f.u.peer
	type tc struct {
		name   string
		frame  []byte
		dev    *net.Interface
		gso    uint32
		reason PassReason
	}
	arp := append(append(append([]byte{}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), clientMAC[:]...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	tcp := f.fromClient("v4>v4", rtp(1)).bytes()
	tcp[ip4Proto] = 6
	v6frag := f.fromClient("v6>v4", rtp(1)).bytes()
	v6frag[ip6Next] = ipv6NextFrag
	notHost := f.fromClient("v4>v4", rtp(1))
	notHost.dstMAC = [6]byte{0x02, 9, 9, 9, 9, 9}
	stun := f.fromClient("v4>v4", nil)
	stun.payload = append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...)
	padded := f.fromClient("v4>v4", []byte("hello"))
	padded.payload = append(padded.payload, 0, 0, 0) // RFC 8656 §12.5 padding to 4
	lying := f.fromClient("v4>v4", []byte("hello"))
	binary.BigEndian.PutUint16(lying.payload[cdLength:], 200) // longer than the datagram
	unbound := f.fromClient("v4>v4", rtp(1))
	unbound.payload = channelData(0x4FFE, rtp(1))
	cases := []tc{
		{"ARP", arp, cli, 0, PassOther},
		{"TCP", tcp, cli, 0, PassOther},
		{"not addressed to us", notHost.bytes(), cli, 0, PassOther},
		{"IPv4 options", mod(f.fromClient("v4>v4", rtp(1)), func(fr *testFrame) { fr.v4Options = true }).bytes(), cli, 0, PassOther},
		{"IPv4 fragment", mod(f.fromClient("v4>v4", rtp(1)), func(fr *testFrame) { fr.fragment = true }).bytes(), cli, 0, PassFragment},
		{"IPv6 fragment header", v6frag, cli, 0, PassFragment},
		{"GSO super-packet", f.fromClient("v4>v4", rtp(1)).bytes(), cli, 1200, PassGSO},
		{"2-byte peer datagram", f.fromPeer("v4>v4", []byte{1, 2}).bytes(), peer, 0, PassShort},
		{"Ethernet padding", mod(f.fromClient("v4>v4", []byte("hi")), func(fr *testFrame) { fr.trailer = 4 }).bytes(), cli, 0, PassLength},
		{"STUN to the listener", stun.bytes(), cli, 0, PassNoEntry},
		{"unbound channel", unbound.bytes(), cli, 0, PassNoEntry},
		{"unknown peer", mod(f.fromPeer("v4>v4", rtp(1)), func(fr *testFrame) { fr.src = mustAP("198.51.100.2:6999") }).bytes(), peer, 0, PassNoEntry},
		{"padded ChannelData", padded.bytes(), cli, 0, PassPadding},
		{"ChannelData length past the end", lying.bytes(), cli, 0, PassPadding},
		{"stale generation", f.fromClient("stale", rtp(1)).bytes(), cli, 0, PassStale},
		{"suspended allocation c2p", f.fromClient("suspended", rtp(1)).bytes(), cli, 0, PassSuspended},
		{"suspended allocation p2c", f.fromPeer("suspended", rtp(1)).bytes(), peer, 0, PassSuspended},
		{"CHECKSUM_PARTIAL v4", mod(f.fromClient("v4>v4", rtp(1)), func(fr *testFrame) { fr.partialChecksum = true }).bytes(), cli, 0, PassChecksumPartial},
		{"CHECKSUM_PARTIAL v6", mod(f.fromClient("v6>v6", rtp(1)), func(fr *testFrame) { fr.partialChecksum = true }).bytes(), cli, 0, PassChecksumPartial},
		{"IPv6 checksum 0", mod(f.fromClient("v6>v4", rtp(1)), func(fr *testFrame) { fr.noChecksum = true }).bytes(), cli, 0, PassNoChecksum},
		{"IPv4 checksum 0 toward IPv6", mod(f.fromClient("v4>v6", rtp(1)), func(fr *testFrame) { fr.noChecksum = true }).bytes(), cli, 0, PassNoChecksum},
		{"IPv4 checksum 0 from IPv4 peer to IPv6 client", mod(f.fromPeer("v6>v4", rtp(1)), func(fr *testFrame) { fr.noChecksum = true }).bytes(), peer, 0, PassNoChecksum},
		{"over the route MTU v4", f.fromClient("mtu4", make([]byte, 1300)).bytes(), cli, 0, PassMTU},
		{"over the route MTU v6", f.fromClient("mtu6", make([]byte, 1300)).bytes(), cli, 0, PassMTU},
		{"unreachable peer", f.fromClient("unreachable", rtp(1)).bytes(), cli, 0, PassUnreachable},
		{"forwarding off on the ingress interface", mod(f.fromClient("v4>v4", rtp(1)), func(fr *testFrame) { fr.dstMAC = [6]byte(f.u.nofw.HardwareAddr) }).bytes(), f.u.nofw, 0, PassForwardingDisabled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := mustStats(t, f.t)
			ret, out := f.u.run(t, prog, c.frame, c.dev, c.gso)
			if ret != tcActOK {
				t.Fatalf("verdict %d, want TC_ACT_OK", ret)
			}
			if !bytes.Equal(out, c.frame) {
				t.Errorf("frame changed:\n got % x\nwant % x", out, c.frame)
			}
			d := passDelta(before, mustStats(t, f.t))
			if len(d) != 1 || d[c.reason] != 1 {
				t.Errorf("pass counters moved %v, want only %s +1", d, c.reason)
			}
		})
	}
}

func mustStats(t testing.TB, tb *Table) Stats {
	t.Helper()
	s, err := tb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// passDelta returns the pass reasons whose counters changed.
func passDelta(before, after Stats) map[PassReason]uint64 {
	d := map[PassReason]uint64{}
	for r := range NumPassReasons {
		if n := after.Passed[r] - before.Passed[r]; n != 0 {
			d[r] = n
		}
	}
	return d
}

func itoa(n int) string { return strconv.Itoa(n) }
