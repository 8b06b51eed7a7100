//go:build linux

package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// The peer policy (netaddr.PeerPolicy, built by newPeerPolicy, held in
// Server.policy and swapped by Reload) is enforced at these sites, and only
// here:
//
//  1. gate.checkPeers (gate.go): every XOR-PEER-ADDRESS of a CreatePermission
//     or ChannelBind, before pion sees the request, so a denied peer gets
//     403 (pion would answer a denied ChannelBind 401, a mapped IPv6 peer
//     443). This is also the check for a dual allocation's IPv6 half
//     (dualalloc.go handles those requests after the gate passed them).
//  2. Server.permit (below): pion's PermissionHandler, the same check for
//     any request the gate let through (a second line, at no extra cost).
//  3. relayConn.peerAllowed (relayconn.go): pion's path, per datagram both
//     ways, but only once Reload has replaced the policy the allocation was
//     created under; until then it is one pointer compare.
//  4. Reload (reload.go) → Forwarder.FilterPeers → dataplane.Plane.SetPeerFilter:
//     the data plane's live permissions to peers a reloaded policy denies
//     stop at once.
//
// Every denial at sites 1 and 2 goes through noteDenied (counted, logged
// sampled); sites 3 and 4 count their drops as datagram drops.

// newPeerPolicy builds the peer policy from a resolved config; the relay's
// own addresses (every host address) are denied as peers so the relay
// cannot be looped into itself nor reach the host's services, except that
// its relayed addresses are allowed for relay-to-relay (relayedPortOK checks
// the port).
func newPeerPolicy(r *resolved, allowLoopback bool, own, relayed []netip.Addr) *netaddr.PeerPolicy {
	return netaddr.NewPeerPolicy(netaddr.PeerPolicyConfig{
		AllowLoopback: allowLoopback,
		Allow:         r.allowPeers,
		Deny:          r.denyPeers,
		Own:           own,
		Relay:         relayed,
	})
}

// relayedPortOK reports whether a datagram may go to peer as far as the
// relay-to-relay rule goes: a peer on one of the relay's relayed addresses
// that the policy allowed as such (netaddr.ReasonRelayAddress) must be a
// live relayed transport address, i.e. another TURN client of this relay
// (two relay-only ICE agents on one server, RFC 8445 section 5.1.1.2).
// Every other port there (the TURN listener, the host's services) stays
// out of reach. Any other peer passes: the policy decides it elsewhere.
// Allocation-free.
func (s *Server) relayedPortOK(peer netip.AddrPort) bool {
	a := peer.Addr().Unmap()
	if !slices.Contains(s.relayed, a) {
		return true
	}
	if s.policy.Load().Check(a).Reason != netaddr.ReasonRelayAddress {
		return true // allowed as loopback, or denied by the policy itself
	}
	if s.gate == nil {
		return false
	}
	_, ok := s.gate.dual.relays.Load(netip.AddrPortFrom(a, peer.Port()))
	return ok
}

// permit is the turn.PermissionHandler: CreatePermission, ChannelBind and
// Connect to a peer the policy denies are answered 403 by pion. The policy
// is read atomically, so Reload swaps it without a lock here.
func (s *Server) permit(client net.Addr, peerIP net.IP) bool {
	a, ok := netip.AddrFromSlice(peerIP)
	if !ok {
		s.metrics.peerDenials.WithLabelValues("malformed").Inc()
		return false
	}
	// An IPv4-mapped address stays as is: the policy reduces every
	// embedded-IPv4 form itself and must see the form the client sent.
	v := s.policy.Load().Check(a)
	if v.Allowed {
		return true
	}
	s.noteDenied(client, a, v)
	return false
}

// noteDenied counts and logs (sampled: a client can ask for many denied
// peers) one policy denial.
func (s *Server) noteDenied(client net.Addr, peer netip.Addr, v netaddr.Verdict) {
	s.metrics.peerDenials.WithLabelValues(v.Reason).Inc()
	s.denyLog.Info("peer denied", slog.String("client", client.String()), slog.String("peer", peer.String()), slog.String("reason", v.Reason), slog.String("decided_by", v.Addr.String()))
}
