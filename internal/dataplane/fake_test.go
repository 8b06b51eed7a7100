package dataplane

import (
	"bytes"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/turn/v5"
)

// fakeDatagram is one datagram in or out of a fakeBatch.
type fakeDatagram struct {
	data  []byte
	addr  netip.AddrPort
	trunc bool
}

// fakeBatch is Batch in memory: ReadBatch takes from in, WriteBatch appends
// to out. accept, when >= 0, limits how many datagrams one WriteBatch takes
// (a full send buffer).
type fakeBatch struct {
	mu     sync.Mutex
	in     []fakeDatagram
	out    []fakeDatagram
	accept int
}

func newFakeBatch() *fakeBatch { return &fakeBatch{accept: -1} }

func (f *fakeBatch) push(data []byte, from netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, fakeDatagram{data: data, addr: from})
}

func (f *fakeBatch) take() []fakeDatagram {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.out
	f.out = nil
	return out
}

func (f *fakeBatch) ReadBatch(ms *udpbatch.Msgs, lo, hi int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for i := lo; i < hi && len(f.in) > 0; i++ {
		d := f.in[0]
		f.in = f.in[1:]
		m := &ms.M[i]
		m.N = copy(m.Buf, d.data)
		m.Trunc = d.trunc || len(d.data) > len(m.Buf)
		m.Addr = d.addr
		n++
	}
	return n, nil
}

func (f *fakeBatch) WriteBatch(ms *udpbatch.Msgs, lo, hi int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := hi - lo
	if f.accept >= 0 && n > f.accept {
		n = f.accept
	}
	for i := lo; i < lo+n; i++ {
		f.out = append(f.out, fakeDatagram{data: bytes.Clone(ms.M[i].Buf), addr: ms.M[i].Addr})
	}
	return n, nil
}

// harness is a Plane with one worker driven by hand (no epoll), sockets on
// fake batches, and pion's events played by the test.
type harness struct {
	t  testing.TB
	p  *Plane
	w  *worker
	eh turn.EventHandler
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	p := newPlane(cfg)
	w := newWorker(p, 0)
	p.cores = append(p.cores, w.stats)
	return &harness{t: t, p: p, w: w, eh: p.EventHandler(turn.EventHandler{})}
}

func (h *harness) conn(kind int, local, advertised string) (*Conn, *fakeBatch) {
	h.t.Helper()
	fb := newFakeBatch()
	var adv netip.AddrPort
	if advertised != "" {
		adv = netip.MustParseAddrPort(advertised)
	}
	c := h.p.newConn(kind, fb, -1, netip.MustParseAddrPort(local), adv)
	if err := h.p.register(c); err != nil {
		h.t.Fatalf("register %s: %v", local, err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	return c, fb
}

func udpAddr(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// allocate plays pion's OnAllocationCreated.
func (h *harness) allocate(client, server, relay string) {
	h.eh.OnAllocationCreated(udpAddr(client), udpAddr(server), "UDP", "alice", "example.org", udpAddr(relay), 0)
}

func (h *harness) permit(client, server, relay, peerIP string, add bool) {
	ip := net.ParseIP(peerIP)
	if add {
		h.eh.OnPermissionCreated(udpAddr(client), udpAddr(server), "UDP", "alice", "example.org", udpAddr(relay), ip)
	} else {
		h.eh.OnPermissionDeleted(udpAddr(client), udpAddr(server), "UDP", "alice", "example.org", udpAddr(relay), ip)
	}
}

func (h *harness) bind(client, server, relay, peer string, num uint16, add bool) {
	if add {
		h.eh.OnChannelCreated(udpAddr(client), udpAddr(server), "UDP", "alice", "example.org", udpAddr(relay), udpAddr(peer), num)
	} else {
		h.eh.OnChannelDeleted(udpAddr(client), udpAddr(server), "UDP", "alice", "example.org", udpAddr(relay), udpAddr(peer), num)
	}
}

// serve runs one worker wake-up on c.
func (h *harness) serve(c *Conn) {
	h.w.begin()
	if c.kind == kindListener {
		h.w.serveListener(c)
	} else {
		h.w.serveRelay(c)
	}
	h.w.end()
}

// channelData frames payload on channel num, with pad extra zero bytes.
func channelData(num uint16, payload []byte, pad int) []byte {
	b := make([]byte, channeldata.HeaderLen+len(payload)+pad)
	channeldata.PutHeader(b, num, len(payload))
	copy(b[channeldata.HeaderLen:], payload)
	return b
}

// readQueued returns the datagram pion would read next from c, or false.
func readQueued(c *Conn) ([]byte, netip.AddrPort, bool) {
	select {
	case pkt := <-c.queue:
		return append([]byte(nil), pkt.buf[:pkt.n]...), pkt.from, true
	default:
		return nil, netip.AddrPort{}, false
	}
}
