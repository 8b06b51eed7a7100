package bench

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"github.com/isthmusrelay/isthmus/netaddr"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// peerBatch bounds one recvmmsg/sendmmsg on a peer socket.
const peerBatch = 64

// peerBuf is the receive buffer asked for on a shared peer socket: it takes
// every call's client->peer stream of its family (the kernel caps it at
// net.core.rmem_max).
const peerBuf = 4 << 20

// batchConn is what *ipv4.PacketConn and *ipv6.PacketConn share: batched
// UDP I/O (recvmmsg/sendmmsg on Linux); their Message types are one type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// peerSock is the peer side of every call of one family: one UDP socket
// served with batched I/O. Each call still has its own 5-tuple, because
// each allocation has its own relayed transport address; sharing the peer
// socket keeps the generator's cost per packet well below the relay's, so
// the relay, not the load, is what runs out first.
type peerSock struct {
	fam   netaddr.Family
	conn  *net.UDPConn
	batch batchConn
	addr  *net.UDPAddr // local address, as pion's WriteTo and permissions want it
	// raw is the socket for reads; rx makes "read a batch and account for
	// it" exclusive between the socket's reader goroutine and a spinning
	// generator, and fd is the descriptor the spinner reads (valid until
	// the load closes).
	raw syscall.RawConn
	rx  sync.Mutex
	fd  int
	// stamps is set when the socket delivers kernel receive times.
	stamps bool
	// wrongSource counts bench packets whose source was not their call's
	// relayed address.
	wrongSource atomic.Uint64
}

func newPeerSock(fam netaddr.Family, ip netip.Addr) (*peerSock, error) {
	conn, err := net.ListenUDP(udpNet(fam), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, fmt.Errorf("bench: %s peer socket: %w", fam, err)
	}
	_ = conn.SetReadBuffer(peerBuf)
	_ = conn.SetWriteBuffer(peerBuf)
	p := &peerSock{fam: fam, conn: conn, addr: conn.LocalAddr().(*net.UDPAddr)}
	if fam == netaddr.IPv6 {
		p.batch = ipv6.NewPacketConn(conn)
	} else {
		p.batch = ipv4.NewPacketConn(conn)
	}
	p.stamps = enableRxTimestamps(conn) == nil
	if p.raw, err = conn.SyscallConn(); err == nil {
		err = p.raw.Control(func(fd uintptr) { p.fd = int(fd) })
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bench: %s peer socket: %w", fam, err)
	}
	return p, nil
}

// receivePeer reads batches until the socket closes and hands every packet,
// with its kernel receive time, to the call its SSRC names. It reads inside
// the netpoller's callback under p.rx, so that a spinning generator
// ([LoadConfig.Spin]) can read the same socket between its wake-ups.
func (l *Load) receivePeer(p *peerSock) {
	defer l.wg.Done()
	ms := newRxMsgs()
	for {
		runtime.Gosched() // see pollClients
		var readErr error
		err := p.raw.Read(func(fd uintptr) bool {
			n, err := l.readPeer(p, int(fd), ms, false)
			if n == 0 && err == nil {
				return false // park until readable
			}
			readErr = err
			return true
		})
		if err != nil || readErr != nil {
			return // closed
		}
	}
}

// readPeer reads one batch from the peer socket fd without blocking and
// accounts for it. With try set it gives up at once (0, nil) when another
// reader holds the socket.
func (l *Load) readPeer(p *peerSock, fd int, ms *udpbatch.Msgs, try bool) (int, error) {
	if try {
		if !p.rx.TryLock() {
			return 0, nil
		}
	} else {
		p.rx.Lock()
	}
	defer p.rx.Unlock()
	n, err := udpbatch.Recv(fd, ms, 0, peerBatch)
	for i := range n {
		m := &ms.M[i]
		l.peerPacket(p, m.Buf[:m.N], m.OOB[:m.NOOB], m.Addr)
	}
	return n, err
}

// peerPacket accounts for one packet read from a peer socket.
func (l *Load) peerPacket(p *peerSock, b, oob []byte, from netip.AddrPort) {
	arrived, ok := rxTime(oob)
	if !ok {
		arrived = wallNow()
	}
	st, err := parsePacket(b)
	if err != nil {
		l.misrouted.Add(1)
		return
	}
	id := int(st.ssrc&^warmupSSRCBit) >> 1
	if id >= len(l.calls) || st.ssrc&1 != 0 {
		l.misrouted.Add(1)
		return
	}
	c := l.calls[id]
	if !c.allocated.Load() || !sameAddrPort(from, c.relayUDP) {
		p.wrongSource.Add(1)
		l.misrouted.Add(1)
		return
	}
	l.accept(&c.up, c.ssrc(true), b, arrived, &l.hUp, &l.warmUp)
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// peerOut is one sender goroutine's pending batch of peer->client packets
// for one peer socket.
type peerOut struct {
	p     *peerSock
	ms    []ipv4.Message
	calls []*call
}

func newPeerOut(p *peerSock) *peerOut {
	o := &peerOut{p: p, ms: make([]ipv4.Message, 0, peerBatch), calls: make([]*call, 0, peerBatch)}
	return o
}

// add queues one packet of call c (marshalled into the message's own
// buffer) and flushes when the batch is full.
func (o *peerOut) add(c *call, seq uint64) {
	i := len(o.ms)
	o.ms = o.ms[:i+1]
	m := &o.ms[i]
	if m.Buffers == nil {
		m.Buffers = [][]byte{make([]byte, PacketSize)}
	}
	n, err := marshalPacket(m.Buffers[0][:PacketSize], c.ssrc(false), seq, wallNow())
	if err != nil {
		o.ms = o.ms[:i]
		c.down.sendErrors++
		return
	}
	m.Buffers[0] = m.Buffers[0][:n]
	m.Addr = c.relayUDPAddr
	o.calls = append(o.calls, c)
	if len(o.ms) == peerBatch {
		o.flush()
	}
}

// flush sends the pending batch with as few sendmmsg calls as it takes.
// Packets are stamped again just before the call: the time a packet waited
// in the batch is the generator's, not the relay's.
func (o *peerOut) flush() {
	now := wallNow()
	for i := range o.ms {
		restamp(o.ms[i].Buffers[0], now)
	}
	sent := 0
	for sent < len(o.ms) {
		n, err := o.p.batch.WriteBatch(o.ms[sent:], 0)
		if n > 0 {
			for _, c := range o.calls[sent : sent+n] {
				c.down.sent++
			}
			sent += n
		}
		if err != nil || n == 0 {
			// Count the message that failed and go on with the rest.
			o.calls[sent].down.sendErrors++
			sent++
		}
	}
	o.ms = o.ms[:0]
	o.calls = o.calls[:0]
}
