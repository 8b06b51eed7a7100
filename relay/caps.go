//go:build linux

package relay

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"

	"github.com/pion/stun/v4"
)

// Per-allocation caps on permissions and channels (RFC 8656 §9.2 and
// §11.2 let a server refuse either with 508 Insufficient Capacity). pion
// keeps every permission and channel a client asks for, each with its own
// timer, without a bound; the gate counts them per allocation from pion's
// events and refuses a request that would add a new one beyond
// max_permissions_per_allocation or max_channels_per_allocation. A refresh
// of an existing one adds nothing and always passes.
//
// The counts are kept in the allocation's allocTracker entry, so they end
// with the allocation; pion's deletion events (a permission or channel that
// expired) take their entries out. The IPv6 peers of a dual allocation are
// kept by the gate (dualalloc.go), not by pion, and are not counted.

// capsExceeded reports whether msg, an authenticated CreatePermission or
// ChannelBind on the allocation k, would add a peer IP or a channel beyond
// lim's caps. dual says k is a dual allocation, whose IPv6 peers the gate
// keeps.
func (t *allocTracker) capsExceeded(msg *stun.Message, k allocKey, lim *limits, dual bool) bool {
	if lim == nil || (lim.maxPermissions <= 0 && lim.maxChannels <= 0) {
		return false
	}
	var buf [8]netip.Addr
	peers := buf[:0]
	_ = msg.ForEach(stun.AttrXORPeerAddress, func(m *stun.Message) error {
		var pa stun.XORMappedAddress
		if pa.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
			return nil // pion answers 400
		}
		ip, ok := netip.AddrFromSlice(pa.IP)
		if !ok || dual && ip.Is6() && !ip.Is4In6() {
			return nil
		}
		peers = append(peers, ip.Unmap())
		return nil
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	al, ok := t.live[k]
	if !ok {
		return false
	}
	if lim.maxPermissions > 0 {
		added := 0
		for i, ip := range peers {
			if _, ok := al.perms[ip]; ok || containsAddr(peers[:i], ip) {
				continue
			}
			added++
		}
		if added > 0 && len(al.perms)+added > lim.maxPermissions {
			return true
		}
	}
	if lim.maxChannels > 0 && msg.Type.Method == stun.MethodChannelBind {
		if v, err := msg.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
			if _, ok := al.chans[binary.BigEndian.Uint16(v)]; !ok && len(al.chans) >= lim.maxChannels {
				return true
			}
		}
	}
	return false
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// notePermission records pion's creation (add) or deletion of the
// permission for peer on the allocation k.
func (t *allocTracker) notePermission(k allocKey, peer net.IP, add bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	if al, ok := t.live[k]; ok {
		setMember(&al.perms, ip, add)
		t.live[k] = al
	}
}

// noteChannel records pion's creation (add) or deletion of channel num on
// the allocation k.
func (t *allocTracker) noteChannel(k allocKey, num uint16, add bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if al, ok := t.live[k]; ok {
		setMember(&al.chans, num, add)
		t.live[k] = al
	}
}

// setMember adds k to the set (making it on first use) or deletes it.
func setMember[K comparable](set *map[K]struct{}, k K, add bool) {
	if !add {
		delete(*set, k)
		return
	}
	if *set == nil {
		*set = map[K]struct{}{}
	}
	(*set)[k] = struct{}{}
}

// checkCaps answers 508 Insufficient Capacity, signed with key, to a
// CreatePermission or ChannelBind that would go beyond the allocation's
// permission or channel cap.
func (g *gate) checkCaps(msg *stun.Message, t fiveTuple, key []byte) verdict {
	s := g.srv
	k := t.key()
	if !s.allocs.capsExceeded(msg, k, s.limits.Load(), g.dual.lookup(k) != nil) {
		return verdict{}
	}
	s.metrics.drops.gateReject.Inc()
	s.denyLog.Info("allocation cap reached", slog.String("client", t.src.String()), slog.String("method", msg.Type.Method.String()))
	return verdict{reply: buildError(msg, stun.CodeInsufficientCapacity, key)}
}
