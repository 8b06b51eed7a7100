package relay

import (
	"net"
	"net/netip"
	"sync"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// allocTracker keeps the family pair of each live allocation, so the gauge
// can be decremented (pion's deletion event does not carry the relay
// address). Control path only.
type allocTracker struct {
	mu   sync.Mutex
	live map[string][2]netaddr.Family
}

func tupleKey(src, dst net.Addr, proto string) string {
	return proto + "|" + src.String() + "|" + dst.String()
}

func addrFamily(a net.Addr) netaddr.Family {
	var ip net.IP
	switch v := a.(type) {
	case *net.UDPAddr:
		ip = v.IP
	case *net.TCPAddr:
		ip = v.IP
	}
	na, ok := netip.AddrFromSlice(ip)
	if !ok {
		return 0
	}
	return netaddr.FamilyOf(na.Unmap())
}

// ownEvents is the relay's EventHandler: allocation gauges and request
// error drops. Data plane handlers are chained after it (hooks.go).
func (s *Server) ownEvents() turn.EventHandler {
	return turn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, proto, _, _ string, relay net.Addr, _ int) {
			cf, rf := addrFamily(src), addrFamily(relay)
			s.allocs.mu.Lock()
			s.allocs.live[tupleKey(src, dst, proto)] = [2]netaddr.Family{cf, rf}
			s.allocs.mu.Unlock()
			s.metrics.allocations.WithLabelValues(cf.Label(), rf.Label()).Inc()
			s.metrics.allocationsMade.WithLabelValues(cf.Label(), rf.Label()).Inc()
		},
		OnAllocationDeleted: func(src, dst net.Addr, proto, _, _ string) {
			k := tupleKey(src, dst, proto)
			s.allocs.mu.Lock()
			fams, ok := s.allocs.live[k]
			delete(s.allocs.live, k)
			n := len(s.allocs.live)
			s.allocs.mu.Unlock()
			if ok {
				s.metrics.allocations.WithLabelValues(fams[0].Label(), fams[1].Label()).Dec()
			}
			if n == 0 {
				s.signalIdle()
			}
		},
		OnAllocationError: func(net.Addr, net.Addr, string, string) {
			s.metrics.drops.requestError.Inc()
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
