package dataplane

import (
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/pion/turn/v5"
)

// EventHandler returns next with the data plane's hooks chained in front:
// pion/turn (the control plane) tells the data plane when allocations,
// permissions and channel bindings appear and go, and the fast path follows
// its state exactly. Each hook updates the tables first, then calls next's.
func (p *Plane) EventHandler(next turn.EventHandler) turn.EventHandler {
	h := next
	h.OnAllocationCreated = func(src, dst net.Addr, protocol, userID, realm string, relay net.Addr, requestedPort int) {
		p.allocationCreated(src, dst, relay)
		if next.OnAllocationCreated != nil {
			next.OnAllocationCreated(src, dst, protocol, userID, realm, relay, requestedPort)
		}
	}
	h.OnAllocationDeleted = func(src, dst net.Addr, protocol, userID, realm string) {
		p.allocationDeleted(src, dst)
		if next.OnAllocationDeleted != nil {
			next.OnAllocationDeleted(src, dst, protocol, userID, realm)
		}
	}
	h.OnPermissionCreated = func(src, dst net.Addr, protocol, userID, realm string, relay net.Addr, peer net.IP) {
		p.permission(relay, peer, true)
		if next.OnPermissionCreated != nil {
			next.OnPermissionCreated(src, dst, protocol, userID, realm, relay, peer)
		}
	}
	h.OnPermissionDeleted = func(src, dst net.Addr, protocol, userID, realm string, relay net.Addr, peer net.IP) {
		p.permission(relay, peer, false)
		if next.OnPermissionDeleted != nil {
			next.OnPermissionDeleted(src, dst, protocol, userID, realm, relay, peer)
		}
	}
	h.OnChannelCreated = func(src, dst net.Addr, protocol, userID, realm string, relay, peer net.Addr, num uint16) {
		p.channel(relay, peer, num, true)
		if next.OnChannelCreated != nil {
			next.OnChannelCreated(src, dst, protocol, userID, realm, relay, peer, num)
		}
	}
	h.OnChannelDeleted = func(src, dst net.Addr, protocol, userID, realm string, relay, peer net.Addr, num uint16) {
		p.channel(relay, peer, num, false)
		if next.OnChannelDeleted != nil {
			next.OnChannelDeleted(src, dst, protocol, userID, realm, relay, peer, num)
		}
	}
	return h
}

func (p *Plane) allocationCreated(src, dst, relay net.Addr) {
	relayAP, err1 := addrPortOf(relay)
	srcAP, err2 := addrPortOf(src)
	dstAP, err3 := addrPortOf(dst)
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	_, udp := src.(*net.UDPAddr)
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.relays[relayAP]
	if c == nil {
		// A relay socket the plane does not serve: pion relays it alone.
		return
	}
	lidx, adopted := p.laddrs[dstAP]
	a := &alloc{
		ctl:   ctlKey{server: dstAP, client: srcAP, udp: udp},
		key:   clientKey{listener: lidx, client: srcAP},
		relay: c,
		fast:  udp && adopted,
		fam:   famIndex(srcAP.Addr())*2 + famIndex(c.local.Addr()),
		limit: p.bandwidthLimit(),
	}
	a.state.Store(&allocState{})
	a.quota.reset(p.now())
	if old := p.allocs[a.ctl]; old != nil {
		p.dropAllocLocked(old)
	}
	p.allocs[a.ctl] = a
	c.alloc.Store(a)
	if a.fast {
		p.table.store(a.key, a)
	}
	p.log.Debug("dataplane: allocation", slog.Any("client", srcAP), slog.Any("relay", relayAP), slog.Bool("fast", a.fast))
}

func (p *Plane) allocationDeleted(src, dst net.Addr) {
	srcAP, err1 := addrPortOf(src)
	dstAP, err2 := addrPortOf(dst)
	if err1 != nil || err2 != nil {
		return
	}
	_, udp := src.(*net.UDPAddr)
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.allocs[ctlKey{server: dstAP, client: srcAP, udp: udp}]; a != nil {
		p.dropAllocLocked(a)
	}
}

// dropAllocLocked forgets a; the caller holds p.mu.
func (p *Plane) dropAllocLocked(a *alloc) {
	if p.allocs[a.ctl] == a {
		delete(p.allocs, a.ctl)
	}
	if a.fast {
		p.table.deleteIf(a.key, a)
	}
	a.relay.alloc.CompareAndSwap(a, nil)
	if x := a.extra.Swap(nil); x != nil {
		x.alloc.CompareAndSwap(a, nil)
	}
}

// AttachRelay makes relay, an adopted relay socket (Plane.Relay) of the
// other address family, the second relayed address of the allocation of the
// 5-tuple (src, dst) pion reported: an RFC 8656 dual allocation, of which
// pion knows only the first socket. From then on datagrams to peers of
// relay's family leave on it, its peers' datagrams reach the client on the
// fast path like the first socket's, and permission and channel events
// naming relay's address update the allocation's shared state. Closing
// relay detaches it and leaves the allocation. It reports false when the
// plane serves no such allocation or socket, or the families do not
// differ; then the caller relays that family itself.
func (p *Plane) AttachRelay(src, dst, relay net.Addr) bool {
	relayAP, err1 := addrPortOf(relay)
	srcAP, err2 := addrPortOf(src)
	dstAP, err3 := addrPortOf(dst)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	_, udp := src.(*net.UDPAddr)
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.allocs[ctlKey{server: dstAP, client: srcAP, udp: udp}]
	c := p.relays[relayAP]
	if a == nil || c == nil || c == a.relay || c.v6 == a.relay.v6 {
		return false
	}
	if !c.alloc.CompareAndSwap(nil, a) {
		return false
	}
	a.extra.Store(c)
	return true
}

// allocByRelayLocked finds the allocation of a relayed address.
func (p *Plane) allocByRelayLocked(relay net.Addr) *alloc {
	ap, err := addrPortOf(relay)
	if err != nil {
		return nil
	}
	c := p.relays[ap]
	if c == nil {
		return nil
	}
	return c.alloc.Load()
}

func (p *Plane) permission(relay net.Addr, peer net.IP, add bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.allocByRelayLocked(relay)
	if a == nil {
		return
	}
	a.suspended = slices.DeleteFunc(a.suspended, func(x netip.Addr) bool { return x == ip })
	if add && p.peerFilter != nil && !p.peerFilter(ip) {
		// Granted under a peer policy that a reload has since replaced:
		// the fast path never relays to it (see SetPeerFilter).
		a.suspended = append(a.suspended, ip)
		add = false
	}
	if _, has := a.state.Load().perms[ip]; has == add {
		// pion reports every refresh of a permission: no new state, and
		// no copy of the allocation's state to publish.
		return
	}
	a.update(func(s *allocState) {
		if add {
			s.perms[ip] = struct{}{}
		} else {
			delete(s.perms, ip)
		}
	})
}

// SetPeerFilter applies a reloaded peer policy to live allocations: from now
// on the fast path relays only to and from permitted peers for which allowed
// reports true. Permissions it refuses are suspended, not forgotten (pion
// still holds them and refreshes them without a new event), so a later
// filter that allows the peer again restores them. A nil filter allows
// every permitted peer. It returns how many permissions were suspended.
// Control plane only: the per-packet path never calls allowed.
func (p *Plane) SetPeerFilter(allowed func(netip.Addr) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.peerFilter = allowed
	n := 0
	for _, a := range p.allocs {
		all := append(slices.Collect(maps.Keys(a.state.Load().perms)), a.suspended...)
		var keep, off []netip.Addr
		for _, ip := range all {
			if allowed == nil || allowed(ip) {
				keep = append(keep, ip)
			} else {
				off = append(off, ip)
			}
		}
		n += len(off)
		a.suspended = off
		a.update(func(s *allocState) {
			s.perms = make(map[netip.Addr]struct{}, len(keep))
			for _, ip := range keep {
				s.perms[ip] = struct{}{}
			}
		})
	}
	return n
}

// SetPionPeers names peer IPs whose Send indications the fast path hands to
// pion instead of relaying them: a Send indication names a transport
// address per datagram, and for these IPs (the relay's own relayed
// addresses, allowed only on live relayed ports) the relay checks the
// port on pion's path. ChannelData is not affected: a channel's peer is
// checked once, at ChannelBind. A few addresses at most; nil clears.
func (p *Plane) SetPionPeers(ips []netip.Addr) {
	l := make([]netip.Addr, 0, len(ips))
	for _, a := range ips {
		l = append(l, a.Unmap())
	}
	p.pionPeers.Store(&l)
}

func (p *Plane) channel(relay, peer net.Addr, num uint16, add bool) {
	peerAP, err := addrPortOf(peer)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.allocByRelayLocked(relay)
	if a == nil {
		return
	}
	a.update(func(s *allocState) {
		for i, ch := range s.channels {
			if ch.num == num {
				if add {
					s.channels[i].peer = peerAP
				} else {
					s.channels = append(s.channels[:i], s.channels[i+1:]...)
				}
				return
			}
		}
		if add {
			s.channels = append(s.channels, channel{num: num, peer: peerAP})
		}
	})
}

// AllocationCounts are the datagrams the plane forwarded itself for one
// allocation, indexed by ClientToPeer and PeerToClient; datagrams it handed
// to pion are not in them.
type AllocationCounts struct {
	Packets, Bytes [numDirs]uint64
}

// AllocationCounts returns the counts of the allocation of 5-tuple
// (src, dst) as pion's events name it, and false when the plane does not
// serve it. Control path (one lookup under the plane's mutex): the relay
// reads it once, when the allocation ends, for its session log line, so it
// must be called before the plane's OnAllocationDeleted forgets it.
func (p *Plane) AllocationCounts(src, dst net.Addr) (AllocationCounts, bool) {
	var c AllocationCounts
	srcAP, err1 := addrPortOf(src)
	dstAP, err2 := addrPortOf(dst)
	if err1 != nil || err2 != nil {
		return c, false
	}
	_, udp := src.(*net.UDPAddr)
	p.mu.Lock()
	a := p.allocs[ctlKey{server: dstAP, client: srcAP, udp: udp}]
	p.mu.Unlock()
	if a == nil {
		return c, false
	}
	for d := range numDirs {
		c.Packets[d] = a.dir[d].packets.Load()
		c.Bytes[d] = a.dir[d].bytes.Load()
	}
	return c, true
}
