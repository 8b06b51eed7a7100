package relay

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
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

// portPool hands out relay ports from min..max, one pool shared by every
// relay IP and every allocation manager, so a port is never used twice at
// once. It is next-fit from a random start, so a freed port is not handed
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

// len is the number of ports in the pool; pairs the number of even pairs.
func (p *portPool) len() int   { return len(p.slots) }
func (p *portPool) pairs() int { return len(p.slots) / 2 }

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
func (p *portPool) release(port int) {
	i := port - p.min
	if i < 0 || i >= len(p.slots) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slots[i].state == slotUsed {
		p.used--
	}
	p.slots[i] = portSlot{}
}

// inUse is the number of ports bound by allocations.
func (p *portPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}
