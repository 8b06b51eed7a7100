package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

// Sentinel errors.
var (
	// ErrClosed is returned when adopting a socket into a closed Plane.
	ErrClosed = errors.New("dataplane: plane closed")
	// ErrUnsupported is returned where the batch I/O back end is missing
	// (the fast path needs Linux: epoll, recvmmsg, sendmmsg).
	ErrUnsupported = errors.New("dataplane: not supported on this platform")
	// ErrNotUDP is returned when adopting a socket that is not a UDP socket
	// with a file descriptor (*net.UDPConn).
	ErrNotUDP = udpbatch.ErrNotUDP

	errBadAddr        = errors.New("bad address")
	errSendBufferFull = errors.New("send buffer full")
)

// Config configures a Plane.
type Config struct {
	// Workers is the number of per-core forwarding loops; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// QueueLen bounds each listener socket's slow-path queue to pion; 0
	// means DefaultQueueLen.
	QueueLen int
	// RelayQueueLen bounds each relay socket's slow-path queue to pion; 0
	// means DefaultRelayQueueLen.
	RelayQueueLen int
	// BandwidthLimit is the per-allocation quota in bytes per second of
	// relayed application data, both directions together (the relay's
	// allocation_bandwidth); 0 means unlimited. See SetBandwidthLimit.
	BandwidthLimit int64
	// BandwidthFunc, when set, is asked for the quota of each new allocation
	// (on pion's event, never per packet) instead of BandwidthLimit, so a
	// relay that reloads its limits needs no extra call.
	BandwidthFunc func() int64
	// RawSend says whether client-to-peer datagrams leave on the workers'
	// raw IP sockets, many allocations per sendmmsg, instead of one sendto
	// each on the allocation's own socket. The zero value, RawSendAuto,
	// uses them where the process may open them (CAP_NET_RAW).
	RawSend RawSendMode
	// ForceDSCP makes every client-to-peer datagram carry DSCP (0..63)
	// and the client's ECN bits; otherwise the client's whole TOS /
	// Traffic Class octet is copied (RFC 8656 §14's preferred behaviour).
	ForceDSCP bool
	// DSCP is the codepoint ForceDSCP sets.
	DSCP uint8
	// Logger receives control-plane events (never per-packet); nil
	// discards them.
	Logger *slog.Logger
}

// RawSendMode is Config.RawSend.
type RawSendMode int

const (
	// RawSendAuto uses raw sockets when they can be opened.
	RawSendAuto RawSendMode = iota
	// RawSendOff always sends on the allocations' own sockets.
	RawSendOff
	// RawSendOn requires raw sockets: New fails without them.
	RawSendOn
)

// String returns the mode's configuration name: auto, off or on.
func (m RawSendMode) String() string {
	switch m {
	case RawSendOff:
		return "off"
	case RawSendOn:
		return "on"
	}
	return "auto"
}

// ParseRawSendMode parses auto, off or on.
func ParseRawSendMode(s string) (RawSendMode, error) {
	switch s {
	case "", "auto":
		return RawSendAuto, nil
	case "off":
		return RawSendOff, nil
	case "on":
		return RawSendOn, nil
	}
	return RawSendAuto, fmt.Errorf("dataplane: raw send mode %q: want auto, on or off", s)
}

// Plane is the forwarding data plane: per-core workers that serve adopted
// listener and relay sockets, and the tables pion's events keep current.
// Plane.Stats is its one export of counts.
type Plane struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	mu        sync.Mutex // control plane only; never taken per packet
	closed    bool
	workers   []*worker
	cores     []*coreStats
	relays    map[netip.AddrPort]*Conn // by advertised relayed address
	laddrs    map[netip.AddrPort]uint16
	listeners [][]*Conn // by listener-address index
	allocs    map[ctlKey]*alloc
	conns     map[*Conn]struct{}
	nextRelay int

	// peerFilter is the reloaded peer policy (SetPeerFilter); nil allows
	// every permitted peer. Guarded by mu.
	peerFilter func(netip.Addr) bool

	// pionPeers are peer IPs whose Send indications go to pion, not out
	// of the fast path (SetPionPeers); nil: none.
	pionPeers atomic.Pointer[[]netip.Addr]

	table     allocTable
	lsnap     atomic.Pointer[listenerSnap]
	bandwidth atomic.Int64

	// ttl4 and hop6 are the TTL and hop limit raw sends write: the
	// namespace's defaults, as a UDP socket would use (RFC 8656 §14).
	ttl4, hop6 uint8
}

// ctlKey identifies an allocation in pion's events: server (listener)
// address, client address and whether the client transport is UDP.
type ctlKey struct {
	server, client netip.AddrPort
	udp            bool
}

// listenerSnap says, per listener address and worker, which client-facing
// socket that worker sends ChannelData from: its own per-core socket when it
// has one, so that workers never contend for one socket.
type listenerSnap struct {
	send [][]*Conn // [listener index][worker id]
}

func newPlane(cfg Config) *Plane {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.RelayQueueLen <= 0 {
		cfg.RelayQueueLen = DefaultRelayQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Plane{
		cfg:    cfg,
		log:    cfg.Logger,
		start:  time.Now(),
		relays: make(map[netip.AddrPort]*Conn),
		laddrs: make(map[netip.AddrPort]uint16),
		allocs: make(map[ctlKey]*alloc),
		conns:  make(map[*Conn]struct{}),
	}
	p.lsnap.Store(&listenerSnap{})
	p.SetBandwidthLimit(cfg.BandwidthLimit)
	p.ttl4, p.hop6 = udpbatch.SystemHopLimits()
	return p
}

// SetBandwidthLimit sets the quota, in bytes per second for both directions
// together, of allocations created from now on; live allocations keep
// theirs (as the relay's Reload). 0 means unlimited.
func (p *Plane) SetBandwidthLimit(bytesPerSecond int64) {
	p.bandwidth.Store(min(max(bytesPerSecond, 0), maxQuotaRate))
}

// New starts a Plane with cfg.Workers forwarding loops. Adopt sockets with
// Listener and Relay, and chain EventHandler into pion's server config.
func New(cfg Config) (*Plane, error) {
	p := newPlane(cfg)
	if err := p.startWorkers(); err != nil {
		return nil, err
	}
	p.log.Debug("dataplane started", slog.Int("workers", len(p.workers)))
	return p, nil
}

// bandwidthLimit is the quota for an allocation created now.
func (p *Plane) bandwidthLimit() int64 {
	if p.cfg.BandwidthFunc != nil {
		return min(max(p.cfg.BandwidthFunc(), 0), maxQuotaRate)
	}
	return p.bandwidth.Load()
}

// Workers returns the number of forwarding loops.
func (p *Plane) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers)
}

// now is the plane's monotonic clock in nanoseconds.
func (p *Plane) now() int64 { return int64(time.Since(p.start)) }

// Listener adopts a client-facing UDP socket (one of the per-core
// SO_REUSEPORT sockets). pc is closed; the returned Conn owns a duplicate of
// its descriptor, served by a worker, and is what pion must be given.
func (p *Plane) Listener(pc net.PacketConn) (*Conn, error) {
	return p.adopt(pc, kindListener, netip.AddrPort{})
}

// Relay adopts an allocation's relay socket, as returned by a
// RelayAddressGenerator. advertised is the relayed transport address the
// generator reports to pion (the external address behind 1:1 NAT); the zero
// value means the socket's own address.
func (p *Plane) Relay(pc net.PacketConn, advertised netip.AddrPort) (*Conn, error) {
	return p.adopt(pc, kindRelay, advertised)
}

func (p *Plane) adopt(pc net.PacketConn, kind int, advertised netip.AddrPort) (*Conn, error) {
	fd, local, v6, err := udpbatch.Adopt(pc)
	if errors.Is(err, udpbatch.ErrUnsupported) {
		return nil, ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	// Each datagram's TOS / Traffic Class, to copy onto what goes out the
	// other side (tos.go); listeners send each datagram's own marking.
	udpbatch.EnableRecvTOS(fd, v6)
	b := udpbatch.Socket{FD: fd, V6: v6, RecvTOS: true, SendTOS: kind == kindListener}
	c := p.newConn(kind, b, fd, local, advertised)
	c.v6 = v6
	if err := p.register(c); err != nil {
		_ = udpbatch.Close(fd)
		return nil, err
	}
	return c, nil
}

func (p *Plane) newConn(kind int, b udpbatch.Batch, fd int, local, advertised netip.AddrPort) *Conn {
	if !advertised.IsValid() {
		advertised = local
	}
	advertised = netip.AddrPortFrom(advertised.Addr().Unmap(), advertised.Port())
	qlen := p.cfg.QueueLen
	if kind == kindRelay {
		qlen = p.cfg.RelayQueueLen
	}
	return &Conn{
		plane:      p,
		kind:       kind,
		b:          b,
		fd:         fd,
		local:      local,
		laddr:      net.UDPAddrFromAddrPort(local),
		advertised: advertised,
		slot:       -1,
		queue:      make(chan *slowPacket, qlen),
		done:       make(chan struct{}),
	}
}

// register puts c into the tables and hands it to its worker.
func (p *Plane) register(c *Conn) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	switch c.kind {
	case kindListener:
		idx, ok := p.laddrs[c.local]
		if !ok {
			idx = uint16(len(p.listeners))
			p.laddrs[c.local] = idx
			p.listeners = append(p.listeners, nil)
		}
		c.lidx = idx
		if len(p.workers) > 0 {
			c.owner = p.workers[len(p.listeners[idx])%len(p.workers)]
		}
		p.listeners[idx] = append(p.listeners[idx], c)
		p.rebuildListenersLocked()
	case kindRelay:
		p.relays[c.advertised] = c
		if len(p.workers) > 0 {
			c.owner = p.workers[p.nextRelay%len(p.workers)]
			p.nextRelay++
		}
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	if c.owner != nil && c.fd >= 0 {
		c.owner.send(command{kind: cmdAdd, c: c})
	}
	return nil
}

func (p *Plane) rebuildListenersLocked() {
	n := max(len(p.workers), 1)
	snap := &listenerSnap{send: make([][]*Conn, len(p.listeners))}
	for idx, ls := range p.listeners {
		if len(ls) == 0 {
			continue
		}
		row := make([]*Conn, n)
		for w := range row {
			row[w] = ls[w%len(ls)]
			for _, c := range ls {
				if c.owner != nil && c.owner.id == w {
					row[w] = c
					break
				}
			}
		}
		snap.send[idx] = row
	}
	p.lsnap.Store(snap)
}

// release takes c off the fast path and closes its descriptor once no
// worker can be using it.
func (p *Plane) release(c *Conn) {
	p.mu.Lock()
	switch c.kind {
	case kindListener:
		ls := p.listeners[c.lidx]
		for i, x := range ls {
			if x == c {
				p.listeners[c.lidx] = append(ls[:i:i], ls[i+1:]...)
				break
			}
		}
		p.rebuildListenersLocked()
	case kindRelay:
		if p.relays[c.advertised] == c {
			delete(p.relays, c.advertised)
		}
		if a := c.alloc.Swap(nil); a != nil {
			if a.extra.CompareAndSwap(c, nil) {
				break // a dual allocation's second socket: the allocation stays
			}
			p.dropAllocLocked(a)
		}
	}
	delete(p.conns, c)
	stopped := p.closed
	p.mu.Unlock()

	close(c.done)
	if c.owner != nil && !stopped {
		p.quiesce(c)
	}
	c.wmu.Lock()
	c.closed = true
	if c.fd >= 0 {
		_ = udpbatch.Close(c.fd)
	}
	c.wmu.Unlock()
}

// quiesce waits until every worker has finished the wake-up it was in: the
// owner has removed c from its epoll set, and no other worker still holds a
// table snapshot that leads to c (a grace period, as in RCU).
func (p *Plane) quiesce(c *Conn) {
	type pending struct {
		w    *worker
		done chan struct{}
	}
	var waits []pending
	for _, w := range p.workers {
		cmd := command{kind: cmdBarrier, done: make(chan struct{})}
		if w == c.owner && c.fd >= 0 {
			cmd.kind, cmd.c = cmdRemove, c
		}
		if w.send(cmd) {
			waits = append(waits, pending{w, cmd.done})
		}
	}
	for _, pw := range waits {
		select {
		case <-pw.done:
		case <-pw.w.exited:
		}
	}
}

// Close stops the workers and closes every adopted socket. pion's readers
// see net.ErrClosed.
func (p *Plane) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	workers := p.workers
	p.mu.Unlock()

	var errs []error
	for _, w := range workers {
		if err := w.stop(); err != nil {
			errs = append(errs, fmt.Errorf("dataplane: stop worker %d: %w", w.id, err))
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return errors.Join(errs...)
}
