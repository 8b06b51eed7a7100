package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

// Conn is an adopted UDP socket as pion/turn sees it: a net.PacketConn
// whose ReadFrom returns only the datagrams the fast path did not take
// (control traffic), and whose WriteTo sends on the socket directly.
// A Conn is either a client-facing listener (Plane.Listener) or an
// allocation's relay socket (Plane.Relay).
type Conn struct {
	plane *Plane
	kind  int // kindListener or kindRelay
	b     udpbatch.Batch
	fd    int  // -1 for sockets without a descriptor (tests)
	v6    bool // AF_INET6 socket
	local netip.AddrPort
	laddr *net.UDPAddr
	// advertised is the relayed transport address pion hands the client
	// (differs from local behind 1:1 NAT).
	advertised netip.AddrPort
	// lidx is the listener-address index (listeners only).
	lidx uint16

	owner *worker
	slot  int32

	// alloc is the allocation this relay socket belongs to, set by the
	// OnAllocationCreated event.
	alloc atomic.Pointer[alloc]

	queue chan *slowPacket
	done  chan struct{}
	once  sync.Once

	// wmu orders control-plane writes against closing the descriptor.
	wmu    sync.RWMutex
	closed bool
	one    *udpbatch.Msgs // WriteTo scratch for descriptor-less sockets, under wmu write lock

	dl deadline

	// tos is the TOS / Traffic Class the socket currently sends with
	// (setMark); 0 is the kernel's default.
	tos atomic.Uint32
}

// slowPacket is one datagram on its way to pion.
type slowPacket struct {
	buf  [SlotSize]byte
	n    int
	from netip.AddrPort
}

var slowPool = sync.Pool{New: func() any { return new(slowPacket) }}

// enqueue hands a datagram to pion's reader; it never blocks. It reports
// false when the queue is full (the caller counts the drop).
func (c *Conn) enqueue(b []byte, from netip.AddrPort) bool {
	pkt := slowPool.Get().(*slowPacket)
	pkt.n = copy(pkt.buf[:], b)
	pkt.from = from
	select {
	case c.queue <- pkt:
		return true
	default:
		slowPool.Put(pkt)
		return false
	}
}

// ReadFrom implements net.PacketConn for pion: it returns the next datagram
// the fast path handed over.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.done:
		return 0, nil, c.opErr("read", net.ErrClosed)
	default:
	}
	for {
		expired, changed := c.dl.wait()
		select {
		case pkt := <-c.queue:
			n := copy(p, pkt.buf[:pkt.n])
			addr := &net.UDPAddr{IP: pkt.from.Addr().AsSlice(), Port: int(pkt.from.Port())}
			slowPool.Put(pkt)
			return n, addr, nil
		case <-c.done:
			return 0, nil, c.opErr("read", net.ErrClosed)
		case <-expired:
			return 0, nil, c.opErr("read", os.ErrDeadlineExceeded)
		case <-changed:
			// SetReadDeadline while waiting: look at the new deadline.
		}
	}
}

// WriteTo implements net.PacketConn: control-plane traffic (STUN responses,
// Data indications, Send-indication payloads) goes straight to the socket.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	to, err := addrPortOf(addr)
	if err != nil {
		return 0, c.opErr("write", err)
	}
	if c.fd >= 0 {
		c.wmu.RLock()
		defer c.wmu.RUnlock()
		if c.closed {
			return 0, c.opErr("write", net.ErrClosed)
		}
		if err := udpbatch.WriteTo(c.fd, p, to, c.v6, false); err != nil {
			return 0, c.opErr("write", err)
		}
		return len(p), nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, c.opErr("write", net.ErrClosed)
	}
	if c.one == nil {
		c.one = udpbatch.NewMsgs(1, 0, 0)
	}
	m := &c.one.M[0]
	m.Buf, m.Addr = p, to
	n, err := c.b.WriteBatch(c.one, 0, 1)
	m.Buf = m.Mem
	if err != nil {
		return 0, c.opErr("write", err)
	}
	if n != 1 {
		return 0, c.opErr("write", errSendBufferFull)
	}
	return len(p), nil
}

// Close implements net.PacketConn. It takes the socket off the fast path,
// waits until no worker can still be using it, then closes the descriptor.
func (c *Conn) Close() error {
	c.once.Do(func() { c.plane.release(c) })
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// SetDeadline implements net.PacketConn; only the read side has a deadline
// (writes never wait on the queue).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dl.set(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes do not block on
// anything a deadline could bound, so it is accepted and ignored.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.laddr, Err: err}
}

// addrPortOf converts pion's net.Addr (a *net.UDPAddr) to the data plane's
// key form: netip, IPv4 unmapped.
func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		if !ok || v.Port < 0 || v.Port > 0xffff {
			return netip.AddrPort{}, fmt.Errorf("dataplane: address %v: %w", a, errBadAddr)
		}
		return netip.AddrPortFrom(ip.Unmap(), uint16(v.Port)), nil
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		if !ok || v.Port < 0 || v.Port > 0xffff {
			return netip.AddrPort{}, fmt.Errorf("dataplane: address %v: %w", a, errBadAddr)
		}
		return netip.AddrPortFrom(ip.Unmap(), uint16(v.Port)), nil
	case nil:
		return netip.AddrPort{}, fmt.Errorf("dataplane: nil address: %w", errBadAddr)
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dataplane: address %v: %w", a, errBadAddr)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// deadline is a read deadline that a blocked ReadFrom observes even when it
// changes while waiting.
type deadline struct {
	mu      sync.Mutex
	expired chan struct{} // closed when the deadline passes; nil = none
	changed chan struct{} // closed (and replaced) by every set
	timer   *time.Timer
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
	if t.IsZero() {
		d.expired = nil
		return
	}
	ch := make(chan struct{})
	d.expired = ch
	if dur := time.Until(t); dur <= 0 {
		close(ch)
	} else {
		d.timer = time.AfterFunc(dur, func() { close(ch) })
	}
}

func (d *deadline) wait() (expired, changed <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.expired, d.changed
}
