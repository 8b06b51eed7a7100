//go:build linux

package relay

import (
	"net"
	"sync"
	"time"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// allocTracker keeps each live allocation's owner and family pair, by
// 5-tuple: the gauge is decremented from it (pion's deletion event does not
// carry the relay address), and the request gate answers 437 and 441 from
// it. Control path only.
type allocTracker struct {
	mu   sync.Mutex
	live map[allocKey]liveAlloc
}

// liveAlloc is what the relay knows of one allocation.
type liveAlloc struct {
	userID   string
	families [2]netaddr.Family // client, relayed
	created  time.Time         // for isthmus_relay_allocation_duration_seconds
}

// owner returns the user ID of the allocation on k, if there is one.
func (t *allocTracker) owner(k allocKey) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.live[k]
	return a.userID, ok
}

func addrFamily(a net.Addr) netaddr.Family {
	ap := addrPortOf(a)
	if !ap.IsValid() {
		return 0
	}
	return netaddr.FamilyOf(ap.Addr())
}

// ownEvents is the relay's EventHandler: allocation gauges and request
// error drops. The Forwarder's handlers run before it (Forwarder.Events).
func (s *Server) ownEvents() turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, _, userID, _ string, relay net.Addr, _ int) {
			cf, rf := addrFamily(src), addrFamily(relay)
			s.allocs.mu.Lock()
			s.allocs.live[keyOf(src, dst)] = liveAlloc{userID: userID, families: [2]netaddr.Family{cf, rf}, created: time.Now()}
			s.allocs.mu.Unlock()
			s.metrics.allocations.WithLabelValues(cf.Label(), rf.Label()).Inc()
			s.metrics.allocationsMade.WithLabelValues(cf.Label(), rf.Label()).Inc()
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) {
			k := keyOf(src, dst)
			s.allocs.mu.Lock()
			a, ok := s.allocs.live[k]
			delete(s.allocs.live, k)
			n := len(s.allocs.live)
			s.allocs.mu.Unlock()
			if ok {
				s.metrics.allocations.WithLabelValues(a.families[0].Label(), a.families[1].Label()).Dec()
				s.opsMetrics.allocDuration.Observe(time.Since(a.created).Seconds())
			}
			if n == 0 {
				s.signalIdle()
			}
		},
		OnAllocationError: func(net.Addr, net.Addr, string, string) {
			s.metrics.drops.requestError.Inc()
		},
		// pion's permissions and channels of dual allocations (dualalloc.go).
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			s.gate.dual.pionPermission(src, dst, relay, peer, true)
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			s.gate.dual.pionPermission(src, dst, relay, peer, false)
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			s.gate.dual.pionChannel(src, dst, relay, peer, num, true)
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			s.gate.dual.pionChannel(src, dst, relay, peer, num, false)
		},
	}
}

// liveAllocations is the number of allocations pion reported and not yet
// deleted.
func (s *Server) liveAllocations() int {
	s.allocs.mu.Lock()
	defer s.allocs.mu.Unlock()
	return len(s.allocs.live)
}
