package relay

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// newPeerPolicy builds the peer policy from a resolved config; the relay's
// own addresses (relay, advertised and specific listen IPs) are denied as
// peers so the relay cannot be looped into itself.
func newPeerPolicy(r *resolved, allowLoopback bool, own []netip.Addr) *netaddr.PeerPolicy {
	return netaddr.NewPeerPolicy(netaddr.PeerPolicyConfig{
		AllowLoopback: allowLoopback,
		Allow:         r.allowPeers,
		Deny:          r.denyPeers,
		Own:           own,
	})
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
