package dataplane

import (
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"net/netip"
	"testing"
)

// rtpSize is a G.711 20 ms RTP packet: 12-byte header + 160 bytes.
const rtpSize = 172

// feed is a Batch that never allocates: every read returns copies of one
// datagram (at most left in total), every write is counted.
type feed struct {
	tmpl []byte
	from netip.AddrPort
	left int
	sent int
}

func (f *feed) ReadBatch(ms *udpbatch.Msgs, lo, hi int) (int, error) {
	n := min(hi-lo, f.left)
	for i := lo; i < lo+n; i++ {
		m := &ms.M[i]
		m.N = copy(m.Buf, f.tmpl)
		m.Addr = f.from
		m.Trunc = false
	}
	f.left -= n
	return n, nil
}

func (f *feed) WriteBatch(ms *udpbatch.Msgs, lo, hi int) (int, error) {
	f.sent += hi - lo
	return hi - lo, nil
}

// benchPlane builds a plane with n allocations on one IPv6 listener, each
// relayed over IPv4 with one bound channel, on feed sockets.
func benchPlane(b *testing.B, n int) (*harness, *Conn, *feed, []*Conn, []*feed) {
	h := newHarness(b, Config{BandwidthLimit: maxQuotaRate}) // the quota code runs, nothing is dropped
	lnFeed := &feed{}
	ln := h.p.newConn(kindListener, lnFeed, -1, netip.MustParseAddrPort(tServer), netip.AddrPort{})
	if err := h.p.register(ln); err != nil {
		b.Fatal(err)
	}
	relays := make([]*Conn, n)
	feeds := make([]*feed, n)
	for i := range n {
		relay := fmt.Sprintf("192.0.2.1:%d", 50000+i)
		client := fmt.Sprintf("[2001:db8::10]:%d", 40000+i)
		peer := fmt.Sprintf("198.51.100.7:%d", 6000+i)
		feeds[i] = &feed{tmpl: make([]byte, rtpSize), from: netip.MustParseAddrPort(peer)}
		relays[i] = h.p.newConn(kindRelay, feeds[i], -1, netip.MustParseAddrPort(relay), netip.AddrPort{})
		if err := h.p.register(relays[i]); err != nil {
			b.Fatal(err)
		}
		h.allocate(client, tServer, relay)
		h.permit(client, tServer, relay, "198.51.100.7", true)
		h.bind(client, tServer, relay, peer, 0x4000, true)
	}
	return h, ln, lnFeed, relays, feeds
}

// benchListener times b.N client datagrams: wake-ups that each serve the
// listener (a batch of IdealBatchSize from lnFeed), all relayed to out.
func benchListener(b *testing.B, h *harness, ln *Conn, lnFeed, out *feed) {
	b.ReportAllocs()
	b.SetBytes(rtpSize)
	b.ResetTimer()
	lnFeed.left = b.N
	for lnFeed.left > 0 {
		h.w.begin()
		h.w.serveListener(ln)
		h.w.end()
	}
	b.StopTimer()
	if out.sent != b.N {
		b.Fatalf("forwarded %d of %d", out.sent, b.N)
	}
}

// benchRelays times b.N peer datagrams: wake-ups that each find one datagram
// on every relay socket, all relayed to the clients through out.
func benchRelays(b *testing.B, h *harness, relays []*Conn, feeds []*feed, out *feed) {
	b.ReportAllocs()
	b.SetBytes(rtpSize)
	b.ResetTimer()
	for done := 0; done < b.N; {
		h.w.begin()
		for i, r := range relays {
			if done == b.N {
				break
			}
			feeds[i].left = 1
			h.w.serveRelay(r)
			done++
		}
		h.w.end()
	}
	b.StopTimer()
	if out.sent != b.N {
		b.Fatalf("forwarded %d of %d", out.sent, b.N)
	}
}

// BenchmarkForwardClientToPeer measures the data plane's own cost per
// relayed client datagram (172-byte RTP in ChannelData), batches of
// IdealBatchSize from one client, socket I/O faked. One op is one datagram.
func BenchmarkForwardClientToPeer(b *testing.B) {
	h, ln, lnFeed, _, feeds := benchPlane(b, 1)
	lnFeed.tmpl = channelData(0x4000, make([]byte, rtpSize), 0)
	lnFeed.from = netip.MustParseAddrPort("[2001:db8::10]:40000")
	benchListener(b, h, ln, lnFeed, feeds[0])
}

// BenchmarkForwardPeerToClient measures the cost per relayed peer datagram
// when one wake-up finds one datagram on each of 64 allocations' relay
// sockets (the per-core multi-port case) and sends them to the clients in
// one batch. One op is one datagram.
func BenchmarkForwardPeerToClient(b *testing.B) {
	const allocs = 64
	h, _, lnFeed, relays, feeds := benchPlane(b, allocs)
	benchRelays(b, h, relays, feeds, lnFeed)
}

// BenchmarkForwardSendIndication is BenchmarkForwardClientToPeer with Send
// indications instead of ChannelData (decoded in place by pion/stun).
func BenchmarkForwardSendIndication(b *testing.B) {
	h, ln, lnFeed, _, feeds := benchPlane(b, 1)
	lnFeed.tmpl = sendInd(b, netip.MustParseAddrPort("198.51.100.7:6000"), make([]byte, rtpSize))
	lnFeed.from = netip.MustParseAddrPort("[2001:db8::10]:40000")
	benchListener(b, h, ln, lnFeed, feeds[0])
}

// BenchmarkForwardDataIndication is BenchmarkForwardPeerToClient for
// permitted peers without a channel: each datagram leaves as a Data
// indication encoded by pion/stun into the slot.
func BenchmarkForwardDataIndication(b *testing.B) {
	const allocs = 64
	h, _, lnFeed, relays, feeds := benchPlane(b, allocs)
	for i := range feeds {
		feeds[i].from = netip.AddrPortFrom(feeds[i].from.Addr(), 1) // no channel to port 1
	}
	benchRelays(b, h, relays, feeds, lnFeed)
}
