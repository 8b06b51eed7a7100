//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Errors the relay address generator returns. pion answers every generator
// error with 508 (Insufficient Capacity), the RFC 8656 §7.2 code for "the
// server cannot allocate now".
var (
	// ErrDraining: the relay is draining and takes no new allocations.
	ErrDraining = errors.New("relay: draining, no new allocations")
	// ErrCapacity: max_allocations is reached.
	ErrCapacity = errors.New("relay: max_allocations reached")
	// ErrUserQuota: the user's allocation quota is reached.
	ErrUserQuota = errors.New("relay: user quota reached")
	// ErrNoRelayFamily: no relay IP of the requested address family.
	ErrNoRelayFamily = errors.New("relay: no relay address of the requested family")
	// ErrTCPRelay: TCP relaying (RFC 6062) is not offered.
	ErrTCPRelay = errors.New("relay: TCP relay allocations are not supported")
)

// relayIP is one relay address and what clients are told it is.
type relayIP struct {
	bind      netip.Addr // where the socket binds
	advertise netip.Addr // XOR-RELAYED-ADDRESS (differs behind 1:1 NAT)
}

// relayInfo describes one relay socket to the code wrapping it.
type relayInfo struct {
	family    netaddr.Family
	bind      netip.AddrPort
	advertise netip.AddrPort
	userID    string
}

// addrGenerator is the family-aware turn.RelayAddressGenerator. pion's
// static generators hold a single IP; this one keeps relay IPs per family,
// hands ports from one pool per relay IP, enforces the allocation quotas, and
// fixes the family of RESERVATION-TOKEN allocations (see AllocatePacketConn).
type addrGenerator struct {
	byFamily map[netaddr.Family][]relayIP
	rr       [2]atomic.Uint32 // round-robin cursor per family
	pool     *portPools
	bufs     sockBufs
	srv      *Server

	mu      sync.Mutex
	perUser map[string]int
	pending map[pendingKey]pendingReservation
}

// pendingKey names the reservation a user's next allocation of a family
// should take (set by the request gate, see gate.rewriteReservation).
type pendingKey struct {
	userID string
	family netaddr.Family
}

type pendingReservation struct {
	port  int
	until time.Time
}

var _ turn.RelayAddressGenerator = (*addrGenerator)(nil)

func newAddrGenerator(ips []relayIP, pool *portPools, bufs sockBufs, srv *Server) *addrGenerator {
	g := &addrGenerator{byFamily: map[netaddr.Family][]relayIP{}, pool: pool, bufs: bufs, srv: srv,
		perUser: map[string]int{}, pending: map[pendingKey]pendingReservation{}}
	for _, r := range ips {
		f := netaddr.FamilyOf(r.bind)
		g.byFamily[f] = append(g.byFamily[f], r)
	}
	return g
}

// Validate implements turn.RelayAddressGenerator.
func (g *addrGenerator) Validate() error {
	if len(g.byFamily) == 0 {
		return ErrNoRelayFamily
	}
	return nil
}

// hasFamily reports whether relays of family f can be allocated.
func (g *addrGenerator) hasFamily(f netaddr.Family) bool { return len(g.byFamily[f]) > 0 }

func familyIndex(f netaddr.Family) int {
	if f == netaddr.IPv6 {
		return 1
	}
	return 0
}

func (g *addrGenerator) pick(f netaddr.Family) (relayIP, bool) {
	l := g.byFamily[f]
	if len(l) == 0 {
		return relayIP{}, false
	}
	i := g.rr[familyIndex(f)].Add(1)
	return l[int(i)%len(l)], true
}

func (g *addrGenerator) ipFor(bind netip.Addr) (relayIP, bool) {
	for _, r := range g.byFamily[netaddr.FamilyOf(bind)] {
		if r.bind == bind {
			return r, true
		}
	}
	return relayIP{}, false
}

// userCount is the number of live allocations of a user.
func (g *addrGenerator) userCount(userID string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perUser[userID]
}

func (g *addrGenerator) reserveUser(userID string, quota int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if quota > 0 && g.perUser[userID] >= quota {
		return false
	}
	g.perUser[userID]++
	return true
}

func (g *addrGenerator) releaseUser(userID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perUser[userID] <= 1 {
		delete(g.perUser, userID)
		return
	}
	g.perUser[userID]--
}

// expectReservation tells the generator that userID's next allocation of the
// held port's family is the RESERVATION-TOKEN half of a pair.
func (g *addrGenerator) expectReservation(userID string, port int, now time.Time) {
	ip, ok := g.pool.heldIP(port, now)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, p := range g.pending {
		if now.After(p.until) {
			delete(g.pending, k)
		}
	}
	g.pending[pendingKey{userID, netaddr.FamilyOf(ip)}] = pendingReservation{port: port, until: now.Add(reservationHold)}
}

func (g *addrGenerator) takePending(userID string, f netaddr.Family, now time.Time) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := pendingKey{userID, f}
	p, ok := g.pending[k]
	delete(g.pending, k)
	if !ok || now.After(p.until) {
		return 0, false
	}
	return p.port, true
}

// AllocatePacketConn implements turn.RelayAddressGenerator for UDP relays.
//
// pion calls it three ways:
//   - EVEN-PORT probe (UserID empty, no port): pion's GetRandomEvenPort asks
//     for a "udp4" socket only to learn an even port number and closes it.
//     We answer from the pool without binding and hold the pair.
//   - EVEN-PORT allocation (even RequestedPort): bind it with the requested
//     family and hold port+1 for the RESERVATION-TOKEN, remembering the IP.
//   - ordinary allocation (no port). When the request gate turned a
//     RESERVATION-TOKEN request into an explicit one (gate.go,
//     rewriteReservation), a pending reservation names the port, and the
//     IP remembered by the hold is used: the RTCP half keeps the family and
//     IP of the first allocation. (pion itself passes the default "udp4"
//     for RESERVATION-TOKEN requests, even after an IPv6 first half; an odd
//     RequestedPort that reaches us is still bound on the held IP.)
func (g *addrGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	now := time.Now()
	s := g.srv
	if s.draining.Load() {
		s.metrics.quotaRejected("draining")
		return nil, nil, ErrDraining
	}
	if conf.UserID == "" && conf.RequestedPort == 0 {
		port, err := g.evenPair(now)
		if err != nil {
			s.metrics.quotaRejected("ports")
			return nil, nil, err
		}
		return probeConn{}, &net.UDPAddr{IP: net.IPv4zero, Port: port}, nil
	}

	requested := conf.RequestedPort
	f := netaddr.IPv4
	if conf.Network == "udp6" {
		f = netaddr.IPv6
	}
	if requested == 0 {
		if p, isPending := g.takePending(conf.UserID, f, now); isPending {
			requested = p
		}
	}
	var rip relayIP
	var ok bool
	if requested != 0 {
		if held, isHeld := g.pool.heldIP(requested, now); isHeld {
			rip, ok = g.ipFor(held)
		} else if requested != conf.RequestedPort {
			requested = 0 // the reservation lapsed: an ordinary allocation
		}
	}
	if !ok {
		if rip, ok = g.pick(f); !ok {
			return nil, nil, fmt.Errorf("%w: %s", ErrNoRelayFamily, f)
		}
	}

	lim := s.limits.Load()
	if !g.reserveUser(conf.UserID, lim.userQuota) {
		s.metrics.quotaRejected("user")
		return nil, nil, ErrUserQuota
	}

	var conn *net.UDPConn
	var port int
	var err error
	if requested != 0 {
		conn, port, err = g.bind(rip, requested, now, lim.maxAllocations)
	} else {
		rip, conn, port, err = g.bindFamily(rip, now, lim.maxAllocations)
	}
	if err != nil {
		g.releaseUser(conf.UserID)
		return nil, nil, g.bindFailed(err)
	}
	if requested != 0 && requested%2 == 0 {
		g.pool.hold(port+1, rip.bind, now, reservationHold)
	}
	info := relayInfo{
		family:    netaddr.FamilyOf(rip.bind),
		bind:      netip.AddrPortFrom(rip.bind, uint16(port)),      //nolint:gosec // pool range
		advertise: netip.AddrPortFrom(rip.advertise, uint16(port)), //nolint:gosec // pool range
		userID:    conf.UserID,
	}
	bindIP := rip.bind
	rc := s.newRelayConn(conn, info, func() {
		g.pool.release(bindIP, port)
		g.releaseUser(conf.UserID)
	})
	return rc, net.UDPAddrFromAddrPort(info.advertise), nil
}

// evenPair answers pion's EVEN-PORT probe: an even port whose successor is
// free too, in our pool and on the host. pion asks before it knows which
// family the allocation gets, so the pair must be bindable on every relay IP;
// a pair some other program holds is skipped (the holds lapse).
func (g *addrGenerator) evenPair(now time.Time) (int, error) {
	tries := min(g.pool.pairs(), maxBindTries)
	for try := 0; try < tries; try++ {
		port, err := g.pool.takeEvenPair(now)
		if err != nil {
			return 0, err
		}
		if g.pairBindable(port) {
			return port, nil
		}
	}
	return 0, errPortsExhausted
}

func (g *addrGenerator) pairBindable(port int) bool {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for _, l := range g.byFamily {
		for _, r := range l {
			for _, p := range []int{port, port + 1} {
				c, err := net.ListenUDP(udpNetwork(r.bind), net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.bind, uint16(p)))) //nolint:gosec // pool range
				if err != nil {
					return false
				}
				held = append(held, c)
			}
		}
	}
	return true
}

// maxBindTries bounds how many ports one allocation tries when other
// programs hold ports inside min_port..max_port.
const maxBindTries = 64

// bindFailed counts a failed bind and maps it to the error pion answers
// (508 for all of them).
func (g *addrGenerator) bindFailed(err error) error {
	switch {
	case errors.Is(err, errPoolLimit):
		g.srv.metrics.quotaRejected("total")
		return ErrCapacity
	case errors.Is(err, errPortsExhausted):
		g.srv.metrics.quotaRejected("ports")
	}
	return err
}

// bindFamily binds the next free port on first, or, when first's pool is
// full, on the family's other relay IPs in turn: each relay IP has its own
// ports, so one full pool does not refuse an allocation another can take.
func (g *addrGenerator) bindFamily(first relayIP, now time.Time, limit int) (relayIP, *net.UDPConn, int, error) {
	l := g.byFamily[netaddr.FamilyOf(first.bind)]
	start := 0
	for i, r := range l {
		if r.bind == first.bind {
			start = i
		}
	}
	var lastErr error
	for k := range len(l) {
		rip := l[(start+k)%len(l)]
		conn, port, err := g.bind(rip, 0, now, limit)
		if err == nil {
			return rip, conn, port, nil
		}
		if errors.Is(err, errPoolLimit) {
			return rip, nil, 0, err // the total cap, not this IP's ports
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errPortsExhausted
	}
	return first, nil, 0, lastErr
}

// bind takes a port of rip's pool (the requested one, or the next free)
// and binds it. A port some other process holds is skipped, a few times.
func (g *addrGenerator) bind(rip relayIP, requested int, now time.Time, limit int) (*net.UDPConn, int, error) {
	if requested != 0 {
		if err := g.pool.claim(requested, rip.bind, now, limit); err != nil {
			return nil, 0, err
		}
		c, err := listenRelayUDP(rip.bind, requested, g.bufs)
		if err != nil {
			g.pool.release(rip.bind, requested)
			return nil, 0, err
		}
		return c, requested, nil
	}
	tries := min(g.pool.len(), maxBindTries)
	var lastErr error
	for try := 0; try < tries; try++ {
		port, err := g.pool.take(rip.bind, now, limit)
		if err != nil {
			return nil, 0, err
		}
		c, err := listenRelayUDP(rip.bind, port, g.bufs)
		if err == nil {
			return c, port, nil
		}
		lastErr = err
		// Another program holds it: give it back; the next-fit cursor has
		// moved on, so it is tried again only after a full lap.
		g.pool.release(rip.bind, port)
	}
	return nil, 0, lastErr
}

// AllocateListener implements turn.RelayAddressGenerator; TCP relays (RFC
// 6062) are not offered (the request gate answers 442 before this).
func (g *addrGenerator) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, ErrTCPRelay
}

// AllocateConn implements turn.RelayAddressGenerator; see AllocateListener.
func (g *addrGenerator) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, ErrTCPRelay
}

// probeConn answers pion's EVEN-PORT probe without binding a socket: pion
// only reads the port and closes it.
type probeConn struct{}

func (probeConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (probeConn) WriteTo([]byte, net.Addr) (int, error)  { return 0, net.ErrClosed }
func (probeConn) Close() error                           { return nil }
func (probeConn) LocalAddr() net.Addr                    { return &net.UDPAddr{IP: net.IPv4zero} }
func (probeConn) SetDeadline(time.Time) error            { return nil }
func (probeConn) SetReadDeadline(time.Time) error        { return nil }
func (probeConn) SetWriteDeadline(time.Time) error       { return nil }

// detectRelayIPs picks relay IPs when relay_ips is not set: per family, the
// specific (non-wildcard) listen addresses; else the host's global unicast
// interface addresses, or when it has none its other usable ones (ULA,
// private; never link-local); else, so the
// embedded defaults work on a loopback-only box, the loopback address.
func detectRelayIPs(listen []netip.AddrPort, ifAddrs []netip.Addr) (ips []netip.Addr, loopbackFallback []netaddr.Family) {
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		var specific []netip.Addr
		wildcard := false
		for _, ap := range listen {
			a := ap.Addr()
			if netaddr.FamilyOf(a) != f {
				continue
			}
			if a.IsUnspecified() {
				wildcard = true
			} else if !slices.Contains(specific, a) {
				specific = append(specific, a)
			}
		}
		if len(specific) > 0 {
			ips = append(ips, specific...)
			continue
		}
		if !wildcard {
			continue
		}
		// Global unicast first: a ULA, private or documentation address
		// is only used when the host has no global one of the family
		// (pickRelayIPs then warns, or refuses with strict_relay_ips).
		var global, usable []netip.Addr
		hasLoopback := false
		for _, a := range ifAddrs {
			if netaddr.FamilyOf(a) != f {
				continue
			}
			if a.IsLoopback() {
				hasLoopback = true
			}
			if netaddr.IsUsableHost(a, false) {
				usable = append(usable, a)
				if netaddr.IsGlobal(a) {
					global = append(global, a)
				}
			}
		}
		if len(global) > 0 {
			usable = global
		}
		ips = append(ips, usable...)
		found := len(usable) > 0
		if !found && hasLoopback {
			if f == netaddr.IPv4 {
				ips = append(ips, netip.MustParseAddr("127.0.0.1"))
			} else {
				ips = append(ips, netip.IPv6Loopback())
			}
			loopbackFallback = append(loopbackFallback, f)
		}
	}
	return ips, loopbackFallback
}

// interfaceAddrs lists the host's unicast interface addresses.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			if pa := pfx.Addr(); pa.Zone() == "" {
				out = append(out, pa.Unmap())
			}
		}
	}
	return out
}

// nonGlobalRelayIPs lists the relay IPs whose advertised address is not
// globally reachable (netaddr.IsGlobal: the IANA registries' "Globally
// Reachable"), loopback excepted (its fallback has its own warning).
func nonGlobalRelayIPs(relays []relayIP) []relayIP {
	var out []relayIP
	for _, r := range relays {
		if !netaddr.IsGlobal(r.advertise) {
			out = append(out, r)
		}
	}
	return out
}
