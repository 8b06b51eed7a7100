//go:build linux

package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// relayConn is the relay socket pion sees for one allocation. It counts
// packets and bytes on counters bound once per family (atomic adds, no map
// lookup or lock per packet), enforces the allocation's bandwidth with a
// token bucket, and gives the port back to the pool when pion closes it.
//
// It also applies a peer policy reloaded after the allocation was made to
// the datagrams pion relays itself (TCP clients, or no data plane): the
// policy in force at creation is remembered, and only once Reload has
// replaced it is each datagram's peer checked again (allocation-free).
type relayConn struct {
	net.PacketConn
	ctr    *dirCounters
	limit  *rate.Limiter // nil: unlimited
	drops  *dropCounters
	policy *atomic.Pointer[netaddr.PeerPolicy]
	// portOK is Server.relayedPortOK: relay-to-relay only to live
	// relayed transport addresses.
	portOK  func(netip.AddrPort) bool
	born    *netaddr.PeerPolicy
	once    sync.Once
	onClose func()
	session sessionCounters // this allocation's, for its end-of-session log line
	// tuple is the allocation's 5-tuple (client, server) once pion reports
	// it; planeCounts reads the data plane's share of the session's
	// counts, which the plane forgets when this socket closes.
	tuple       atomic.Pointer[[2]net.Addr]
	planeCounts func(src, dst net.Addr) (toPeer, fromPeer [2]uint64)
	planeOnce   sync.Once

	// Dual allocations (dualalloc.go): advertise names the socket in
	// dualTable.relays; dual is the IPv6 half when this is pion's socket
	// of one; retired means its own (IPv4) half was deleted, so nothing
	// is relayed; killed means it was closed to make pion end the
	// allocation.
	advertise netip.AddrPort
	dualTab   *dualTable
	dual      atomic.Pointer[dualAlloc]
	retired   atomic.Bool
	killed    atomic.Bool
}

// sessionCounters count one allocation's datagrams on pion's path: atomic
// adds on the relayConn itself, no lookup per packet.
type sessionCounters struct {
	toPeerPackets, toPeerBytes     atomic.Uint64
	fromPeerPackets, fromPeerBytes atomic.Uint64
}

// allocationCounter is a Forwarder that counts what it relays per
// allocation (the data plane does); the session log adds its share.
type allocationCounter interface {
	// AllocationCounts returns packets and bytes to and from peers the
	// Forwarder relayed itself for the allocation of 5-tuple (src, dst).
	AllocationCounts(src, dst net.Addr) (toPeer, fromPeer [2]uint64)
}

func planeCountsOf(f Forwarder) func(src, dst net.Addr) (toPeer, fromPeer [2]uint64) {
	if c, ok := f.(allocationCounter); ok {
		return c.AllocationCounts
	}
	return nil
}

// newRelayConn wraps one relay socket: what the Forwarder made of the bound
// socket (the socket itself unless a data plane is on).
func (s *Server) newRelayConn(sock *net.UDPConn, info relayInfo, onClose func()) net.PacketConn {
	rc := &relayConn{
		PacketConn:  s.fwd.Relay(sock, info.advertise),
		ctr:         s.metrics.dir[familyIndex(info.family)],
		drops:       &s.metrics.drops,
		policy:      &s.policy,
		portOK:      s.relayedPortOK,
		born:        s.policy.Load(),
		onClose:     onClose,
		advertise:   info.advertise,
		planeCounts: planeCountsOf(s.fwd),
	}
	if s.gate != nil {
		rc.dualTab = &s.gate.dual
		rc.dualTab.relays.Store(info.advertise, rc)
	}
	if bw := s.limits.Load().bandwidth; bw > 0 {
		// Burst of one second's worth, at least one full-size datagram.
		rc.limit = rate.NewLimiter(rate.Limit(bw), max(bw, 65536))
	}
	return rc
}

// ReadFrom reads the next datagram from a peer. Datagrams over the
// bandwidth limit are dropped (and counted) here, never returned as errors:
// pion deletes the allocation on a read error.
func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if !c.peerAllowed(addr) {
			c.drops.peerPolicy.Inc()
			continue
		}
		if c.retired.Load() {
			c.drops.noPermission.Inc()
			continue
		}
		if c.limit != nil && !c.limit.AllowN(time.Now(), n) {
			c.drops.bandwidth.Inc()
			continue
		}
		c.ctr.fromPeerPackets.Inc()
		c.ctr.fromPeerBytes.Add(uint64(n))
		c.session.fromPeerPackets.Add(1)
		c.session.fromPeerBytes.Add(uint64(n))
		return n, addr, nil
	}
}

// WriteTo sends a client's datagram to a peer, subject to the bandwidth
// limit; an over-limit datagram is dropped, counted and reported as sent.
func (c *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !c.peerAllowed(addr) || !c.relayedOK(addr) {
		c.drops.peerPolicy.Inc()
		return len(b), nil
	}
	if c.retired.Load() {
		c.drops.requestError.Inc()
		return len(b), nil
	}
	if c.limit != nil && !c.limit.AllowN(time.Now(), len(b)) {
		c.drops.bandwidth.Inc()
		return len(b), nil
	}
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.ctr.toPeerPackets.Inc()
		c.ctr.toPeerBytes.Add(uint64(n))
		c.session.toPeerPackets.Add(1)
		c.session.toPeerBytes.Add(uint64(n))
	} else {
		c.drops.sendError.Inc()
	}
	return n, err
}

// peerAllowed reports whether the peer policy still allows addr: always
// while the policy the allocation was created under is in force (its
// permissions were checked then).
func (c *relayConn) peerAllowed(addr net.Addr) bool {
	pol := c.policy.Load()
	if pol == c.born {
		return true
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	a, ok := netip.AddrFromSlice(ua.IP)
	return ok && pol.Check(a).Allowed
}

// relayedOK applies the relay-to-relay port rule (Server.relayedPortOK) to
// a datagram pion relays; a peer that is not a *net.UDPAddr is left to
// peerAllowed.
func (c *relayConn) relayedOK(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || c.portOK == nil {
		return true
	}
	return c.portOK(ua.AddrPort())
}

// Close closes the socket and returns its port and quota, once; a dual
// allocation's IPv6 half goes with it.
func (c *relayConn) Close() error {
	var err error
	if !c.killed.Load() {
		c.takePlaneCounts()
		err = c.PacketConn.Close()
	}
	c.once.Do(func() {
		if c.dualTab != nil {
			c.dualTab.relays.CompareAndDelete(c.advertise, c)
		}
		if d := c.dual.Load(); d != nil {
			d.endV6("allocation deleted", false)
		}
		c.onClose()
	})
	return err
}

// kill closes the socket under pion, whose read loop then deletes the
// allocation (pion has no other way in): a dual allocation whose halves
// are both deleted.
func (c *relayConn) kill() {
	if !c.killed.Swap(true) {
		c.takePlaneCounts()
		_ = c.PacketConn.Close()
	}
}

// takePlaneCounts adds the data plane's counts of this allocation to the
// session's, once, just before the socket closes: closing it makes the
// plane forget the allocation (a dual allocation's IPv6 socket has none
// of its own there; its datagrams are in the allocation's counts).
func (c *relayConn) takePlaneCounts() {
	c.planeOnce.Do(func() {
		t := c.tuple.Load()
		if t == nil || c.planeCounts == nil {
			return
		}
		toPeer, fromPeer := c.planeCounts(t[0], t[1])
		c.session.toPeerPackets.Add(toPeer[0])
		c.session.toPeerBytes.Add(toPeer[1])
		c.session.fromPeerPackets.Add(fromPeer[0])
		c.session.fromPeerBytes.Add(fromPeer[1])
	})
}
