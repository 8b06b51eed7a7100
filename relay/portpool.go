//go:build linux

package relay

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// errPortsExhausted means every relay port in min_port..max_port is taken.
var errPortsExhausted = errors.New("relay: no free relay port")

type slotState uint8

const (
	slotFree slotState = iota
	slotUsed           // bound by an allocation
	slotHeld           // kept for an EVEN-PORT pair until claimed or expired
)

// Hold durations. pion keeps a RESERVATION-TOKEN for 30 s; the even-port
// probe is followed by the real allocation within the same request.
const (
	reservationHold = 30 * time.Second
	probeHold       = 5 * time.Second
)

type portSlot struct {
	state slotState
	until time.Time  // slotHeld: when the hold lapses
	ip    netip.Addr // slotHeld: relay IP the hold is for; zero = any
}

// portPool hands out one relay IP's ports from min..max, shared by every
// allocation manager, so a port is never used twice at once. It is next-fit from a random start, so a freed port is not handed
// out again soon (a late packet from the old peer then finds no one).
type portPool struct {
	mu     sync.Mutex
	min    int
	slots  []portSlot
	cursor int
	used   int
}

func newPortPool(minPort, maxPort int) *portPool {
	n := maxPort - minPort + 1
	return &portPool{min: minPort, slots: make([]portSlot, n), cursor: rand.IntN(n)}
}

func (p *portPool) freeLocked(i int, now time.Time) bool {
	s := &p.slots[i]
	if s.state == slotHeld && now.After(s.until) {
		*s = portSlot{}
	}
	return s.state == slotFree
}

// errPoolLimit means limit ports are already used (max_allocations).
var errPoolLimit = errors.New("relay: allocation limit reached")

// take marks the next free port used and returns it; limit > 0 caps the
// number of used ports (checked under the same lock, so never overshot).
func (p *portPool) take(now time.Time, limit int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit > 0 && p.used >= limit {
		return 0, errPoolLimit
	}
	n := len(p.slots)
	for k := 0; k < n; k++ {
		i := (p.cursor + k) % n
		if p.freeLocked(i, now) {
			p.slots[i].state = slotUsed
			p.used++
			p.cursor = (i + 1) % n
			return p.min + i, nil
		}
	}
	return 0, errPortsExhausted
}

// takeEvenPair finds an even port whose successor is free too and holds both
// for a following claim (pion probes for the EVEN-PORT port first, then
// allocates it with the client's family).
func (p *portPool) takeEvenPair(now time.Time) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.slots)
	for k := 0; k < n; k++ {
		i := (p.cursor + k) % n
		port := p.min + i
		if port%2 != 0 || i+1 >= n {
			continue
		}
		if p.freeLocked(i, now) && p.freeLocked(i+1, now) {
			until := now.Add(probeHold)
			p.slots[i] = portSlot{state: slotHeld, until: until}
			p.slots[i+1] = portSlot{state: slotHeld, until: until}
			p.cursor = (i + 2) % n
			return port, nil
		}
	}
	return 0, errPortsExhausted
}

// heldIP reports the relay IP a held port is reserved for.
func (p *portPool) heldIP(port int, now time.Time) (netip.Addr, bool) {
	i := port - p.min
	if i < 0 || i >= len(p.slots) {
		return netip.Addr{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots[i]
	if s.state != slotHeld || now.After(s.until) || !s.ip.IsValid() {
		return netip.Addr{}, false
	}
	return s.ip, true
}

// claim marks a specific port used: it must be free, or held for ip (or for
// any IP).
func (p *portPool) claim(port int, ip netip.Addr, now time.Time, limit int) error {
	i := port - p.min
	if i < 0 || i >= len(p.slots) {
		return errPortsExhausted
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if limit > 0 && p.used >= limit {
		return errPoolLimit
	}
	s := &p.slots[i]
	ok := p.freeLocked(i, now) || (s.state == slotHeld && (!s.ip.IsValid() || s.ip == ip))
	if !ok {
		return errPortsExhausted
	}
	*s = portSlot{state: slotUsed}
	p.used++
	return nil
}

// hold reserves a free (or probe-held) port for ip until now+d.
func (p *portPool) hold(port int, ip netip.Addr, now time.Time, d time.Duration) bool {
	i := port - p.min
	if i < 0 || i >= len(p.slots) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.slots[i]
	if !p.freeLocked(i, now) && (s.state != slotHeld || s.ip.IsValid()) {
		return false
	}
	*s = portSlot{state: slotHeld, until: now.Add(d), ip: ip}
	return true
}

// release frees a used port.
func (p *portPool) release(port int) { p.releaseUsed(port) }

// releaseUsed frees a port and reports whether it was used (not only held).
func (p *portPool) releaseUsed(port int) bool {
	i := port - p.min
	if i < 0 || i >= len(p.slots) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	wasUsed := p.slots[i].state == slotUsed
	if wasUsed {
		p.used--
	}
	p.slots[i] = portSlot{}
	return wasUsed
}

// inUse is the number of ports bound by allocations.
func (p *portPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// portPools are the relay's port pools, one per relay IP: a relayed
// transport address is an (IP, port) pair (RFC 8656 §2), so port 50000 on
// one relay IP and port 50000 on another are two allocations, and two relay
// IPs offer twice the allocations of one on the same min_port..max_port
// (coturn allocates per relay IP the same way). max_allocations is counted
// across all of them.
type portPools struct {
	min, max int
	ips      []netip.Addr // sorted: the lock order of takeEvenPair
	byIP     map[netip.Addr]*portPool
	used     atomic.Int64 // ports used in every pool together, for the limit
}

func newPortPools(minPort, maxPort int, relays []relayIP) *portPools {
	ps := &portPools{min: minPort, max: maxPort, byIP: map[netip.Addr]*portPool{}}
	for _, r := range relays {
		if _, dup := ps.byIP[r.bind]; !dup {
			ps.byIP[r.bind] = newPortPool(minPort, maxPort)
			ps.ips = append(ps.ips, r.bind)
		}
	}
	slices.SortFunc(ps.ips, netip.Addr.Compare)
	return ps
}

// len is the number of ports of one relay IP's pool.
func (ps *portPools) len() int { return ps.max - ps.min + 1 }

// total is the number of relayed transport addresses of all relay IPs.
func (ps *portPools) total() int { return ps.len() * len(ps.ips) }

// pairs is the number of even pairs in one pool.
func (ps *portPools) pairs() int { return ps.len() / 2 }

// acquire counts one more used port unless limit (> 0) ports are used; it
// is exact under concurrency (compare-and-swap), so the limit is never
// overshot.
func (ps *portPools) acquire(limit int) bool {
	for {
		n := ps.used.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if ps.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// take marks the next free port of ip's pool used.
func (ps *portPools) take(ip netip.Addr, now time.Time, limit int) (int, error) {
	p, ok := ps.byIP[ip]
	if !ok {
		return 0, errPortsExhausted
	}
	if !ps.acquire(limit) {
		return 0, errPoolLimit
	}
	port, err := p.take(now, 0)
	if err != nil {
		ps.used.Add(-1)
	}
	return port, err
}

// claim marks port of ip's pool used (see portPool.claim).
func (ps *portPools) claim(port int, ip netip.Addr, now time.Time, limit int) error {
	p, ok := ps.byIP[ip]
	if !ok {
		return errPortsExhausted
	}
	if !ps.acquire(limit) {
		return errPoolLimit
	}
	err := p.claim(port, ip, now, 0)
	if err != nil {
		ps.used.Add(-1)
	}
	return err
}

// release frees a used port of ip's pool.
func (ps *portPools) release(ip netip.Addr, port int) {
	p, ok := ps.byIP[ip]
	if !ok {
		return
	}
	if p.releaseUsed(port) {
		ps.used.Add(-1)
	}
}

// hold reserves port of ip's pool for ip (see portPool.hold).
func (ps *portPools) hold(port int, ip netip.Addr, now time.Time, d time.Duration) bool {
	p, ok := ps.byIP[ip]
	return ok && p.hold(port, ip, now, d)
}

// heldIP reports the relay IP a held port is reserved for: only ip's own
// pool holds a port for ip.
func (ps *portPools) heldIP(port int, now time.Time) (netip.Addr, bool) {
	for _, ip := range ps.ips {
		if got, ok := ps.byIP[ip].heldIP(port, now); ok {
			return got, true
		}
	}
	return netip.Addr{}, false
}

// takeEvenPair finds an even port whose successor is free in every pool
// and holds the pair in all of them: pion's EVEN-PORT probe comes before
// the family and relay IP are chosen. The allocation then claims it in one
// pool; the other pools' holds lapse after probeHold.
func (ps *portPools) takeEvenPair(now time.Time) (int, error) {
	if len(ps.ips) == 0 {
		return 0, errPortsExhausted
	}
	pools := make([]*portPool, len(ps.ips))
	for i, ip := range ps.ips {
		pools[i] = ps.byIP[ip]
		pools[i].mu.Lock()
	}
	defer func() {
		for _, p := range pools {
			p.mu.Unlock()
		}
	}()
	first := pools[0]
	n := len(first.slots)
	for k := 0; k < n; k++ {
		i := (first.cursor + k) % n
		if (ps.min+i)%2 != 0 || i+1 >= n {
			continue
		}
		free := true
		for _, p := range pools {
			if !p.freeLocked(i, now) || !p.freeLocked(i+1, now) {
				free = false
				break
			}
		}
		if !free {
			continue
		}
		until := now.Add(probeHold)
		for _, p := range pools {
			p.slots[i] = portSlot{state: slotHeld, until: until}
			p.slots[i+1] = portSlot{state: slotHeld, until: until}
			p.cursor = (i + 2) % n
		}
		return ps.min + i, nil
	}
	return 0, errPortsExhausted
}

// inUse is the number of ports bound by allocations on every relay IP.
func (ps *portPools) inUse() int { return int(ps.used.Load()) }
