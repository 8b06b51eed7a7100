//go:build linux

package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
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
	relayed  net.Addr          // pion's relayed address
	conn     *relayConn        // its socket: the session's counters; nil if unknown
	deleted  bool              // a Refresh with LIFETIME 0 was seen
	// pion's permissions (by peer IP) and channels (by number), for the
	// per-allocation caps (caps.go); nil until the first one.
	perms map[netip.Addr]struct{}
	chans map[uint16]struct{}
}

// markDeleted records that the client asked to delete the allocation on k
// (Refresh, LIFETIME 0), for the end reason of its session log line.
func (t *allocTracker) markDeleted(k allocKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.live[k]; ok {
		a.deleted = true
		t.live[k] = a
	}
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
			var rc *relayConn
			if s.gate != nil {
				if v, ok := s.gate.dual.relays.Load(addrPortOf(relay)); ok {
					if rc, _ = v.(*relayConn); rc != nil {
						rc.tuple.Store(&[2]net.Addr{src, dst})
					}
				}
			}
			s.allocs.live[keyOf(src, dst)] = liveAlloc{userID: userID, families: [2]netaddr.Family{cf, rf}, created: time.Now(), relayed: relay, conn: rc}
			s.allocs.mu.Unlock()
			s.metrics.allocations.WithLabelValues(cf.Label(), rf.Label()).Inc()
			s.metrics.allocationsMade.WithLabelValues(cf.Label(), rf.Label()).Inc()
		},
		OnAllocationDeleted: func(src, dst net.Addr, protocol, _, _ string) {
			k := keyOf(src, dst)
			s.allocs.mu.Lock()
			a, ok := s.allocs.live[k]
			delete(s.allocs.live, k)
			n := len(s.allocs.live)
			s.allocs.mu.Unlock()
			if ok {
				s.metrics.allocations.WithLabelValues(a.families[0].Label(), a.families[1].Label()).Dec()
				s.opsMetrics.allocDuration.Observe(time.Since(a.created).Seconds())
				s.logSessionEnd(src, protocol, a)
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
			s.allocs.notePermission(keyOf(src, dst), peer, true)
			s.gate.dual.pionPermission(src, dst, relay, peer, true)
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			s.allocs.notePermission(keyOf(src, dst), peer, false)
			s.gate.dual.pionPermission(src, dst, relay, peer, false)
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			s.allocs.noteChannel(keyOf(src, dst), num, true)
			s.gate.dual.pionChannel(src, dst, relay, peer, num, true)
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			s.allocs.noteChannel(keyOf(src, dst), num, false)
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

// logSessionEnd writes the one info line per allocation end operators
// correlate calls with (coturn logs "usage: rp= rb= sp= sb=" and the
// close reason): the client and relayed addresses and families, the REST
// user part (never a password), duration, packets and bytes each way on
// pion's path, and why it ended: deleted (Refresh LIFETIME 0), drain (cut
// when a drain timed out), closed (the relay shut down, or a TCP/TLS
// client's connection ended) or expired.
func (s *Server) logSessionEnd(client net.Addr, protocol string, a liveAlloc) {
	reason := "expired"
	switch {
	case a.deleted:
		reason = "deleted"
	case s.closed.Load() && s.draining.Load():
		reason = "drain"
	case s.closed.Load(), protocol != "" && protocol != "UDP" && protocol != "udp":
		reason = "closed"
	}
	user := a.userID
	if _, u, ok := strings.Cut(user, ":"); ok {
		user = u
	}
	relayed := []string{}
	if a.relayed != nil {
		relayed = append(relayed, a.relayed.String())
	}
	relayFams := []string{a.families[1].String()}
	var c sessionCounters
	add := func(rc *relayConn) {
		c.toPeerPackets.Add(rc.session.toPeerPackets.Load())
		c.toPeerBytes.Add(rc.session.toPeerBytes.Load())
		c.fromPeerPackets.Add(rc.session.fromPeerPackets.Load())
		c.fromPeerBytes.Add(rc.session.fromPeerBytes.Load())
	}
	if a.conn != nil {
		// The data plane's share is taken when the socket closes; pion
		// may report the deletion first (e.g. at Close), so take it now
		// if it has not been.
		a.conn.takePlaneCounts()
		add(a.conn)
		if d := a.conn.dual.Load(); d != nil {
			// RFC 8656 §7.2 ADDITIONAL-ADDRESS-FAMILY: the IPv6 half.
			relayed = append(relayed, d.relayed.String())
			relayFams = append(relayFams, netaddr.IPv6.String())
			if v6, ok := d.sock.(*relayConn); ok {
				add(v6)
			}
		}
	}
	s.log.Info("allocation ended",
		slog.String("client", client.String()), slog.String("client_family", a.families[0].String()),
		slog.String("transport", strings.ToLower(protocol)),
		slog.Any("relayed", relayed), slog.Any("relay_family", relayFams),
		slog.String("user", user), slog.Duration("duration", time.Since(a.created).Round(time.Millisecond)),
		slog.Uint64("packets_to_peer", c.toPeerPackets.Load()), slog.Uint64("bytes_to_peer", c.toPeerBytes.Load()),
		slog.Uint64("packets_from_peer", c.fromPeerPackets.Load()), slog.Uint64("bytes_from_peer", c.fromPeerBytes.Load()),
		slog.String("reason", reason))
}
