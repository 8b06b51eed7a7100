//go:build linux

package relay

import (
	"net"
	"net/netip"

	"github.com/pion/turn/v5"
)

// hooks is the seam for the forwarding data plane (issue 5). The relay
// creates every socket itself (listen.go) and hands pion what these hooks
// make of them:
//
//   - wrapListener gets each per-core UDP listener socket and returns the
//     net.PacketConn pion's read loop uses (the request gate still wraps
//     the result, so credentials are checked either way);
//   - wrapRelay gets each allocation's bound relay socket and returns the
//     net.PacketConn pion's allocation uses (the relay wraps the result for
//     counters, bandwidth and the port pool);
//   - events is chained after the relay's own EventHandler, so the data
//     plane learns when allocations, permissions and channels come and go;
//   - filterPeers gets the peer policy after a Reload, so the data plane
//     stops relaying to permitted peers the new policy denies (pion's own
//     relaying is filtered in relayConn); it returns how many permissions
//     it suspended;
//   - close runs at Server.Close after pion has stopped.
//
// The defaults pass the sockets through unchanged.
type hooks struct {
	wrapListener func(c *net.UDPConn) net.PacketConn
	wrapRelay    func(c *net.UDPConn, info relayInfo) net.PacketConn
	events       turn.EventHandler
	filterPeers  func(allowed func(netip.Addr) bool) int
	// pionPeers names the relay's relayed IPs to the data plane, whose
	// Send indications to them go through pion so relayConn checks the
	// port (relay-to-relay, relayedPortOK).
	pionPeers func([]netip.Addr)
	// attachRelay gives the data plane a dual allocation's second relay
	// socket (already through wrapRelay), named by its advertised address,
	// for the allocation of 5-tuple (src, dst); false: the relay serves
	// that family on pion's path itself (dualalloc.go).
	attachRelay func(src, dst, relay net.Addr) bool
	// allocCounts returns the packets and bytes (to peer, from peer) the
	// data plane forwarded itself for the allocation of 5-tuple (src,
	// dst); called by the session log before the plane forgets it.
	allocCounts func(src, dst net.Addr) (toPeer, fromPeer [2]uint64)
	close       func() error
	// err, when set, stops the Server from starting: a data plane the
	// configuration requires could not be set up.
	err error
}

// installHooks, when set (by a data plane file in this package), returns the
// hooks for a new Server before any socket is handed to pion.
var installHooks func(s *Server) hooks

func defaultHooks() hooks {
	return hooks{
		wrapListener: func(c *net.UDPConn) net.PacketConn { return c },
		wrapRelay:    func(c *net.UDPConn, _ relayInfo) net.PacketConn { return c },
		filterPeers:  func(func(netip.Addr) bool) int { return 0 },
		pionPeers:    func([]netip.Addr) {},
		attachRelay:  func(net.Addr, net.Addr, net.Addr) bool { return false },
		allocCounts:  func(net.Addr, net.Addr) (toPeer, fromPeer [2]uint64) { return },
		close:        func() error { return nil },
	}
}

// chainEvents returns an EventHandler calling a's callback, then b's.
func chainEvents(a, b turn.EventHandler) turn.EventHandler {
	out := a
	if b.OnAuth != nil {
		out.OnAuth = func(src, dst net.Addr, proto, user, realm, method string, ok bool) {
			if a.OnAuth != nil {
				a.OnAuth(src, dst, proto, user, realm, method, ok)
			}
			b.OnAuth(src, dst, proto, user, realm, method, ok)
		}
	}
	if b.OnAllocationCreated != nil {
		out.OnAllocationCreated = func(src, dst net.Addr, proto, user, realm string, relay net.Addr, port int) {
			if a.OnAllocationCreated != nil {
				a.OnAllocationCreated(src, dst, proto, user, realm, relay, port)
			}
			b.OnAllocationCreated(src, dst, proto, user, realm, relay, port)
		}
	}
	if b.OnAllocationDeleted != nil {
		out.OnAllocationDeleted = func(src, dst net.Addr, proto, user, realm string) {
			if a.OnAllocationDeleted != nil {
				a.OnAllocationDeleted(src, dst, proto, user, realm)
			}
			b.OnAllocationDeleted(src, dst, proto, user, realm)
		}
	}
	if b.OnAllocationError != nil {
		out.OnAllocationError = func(src, dst net.Addr, proto, msg string) {
			if a.OnAllocationError != nil {
				a.OnAllocationError(src, dst, proto, msg)
			}
			b.OnAllocationError(src, dst, proto, msg)
		}
	}
	if b.OnPermissionCreated != nil {
		out.OnPermissionCreated = func(src, dst net.Addr, proto, user, realm string, relay net.Addr, peer net.IP) {
			if a.OnPermissionCreated != nil {
				a.OnPermissionCreated(src, dst, proto, user, realm, relay, peer)
			}
			b.OnPermissionCreated(src, dst, proto, user, realm, relay, peer)
		}
	}
	if b.OnPermissionDeleted != nil {
		out.OnPermissionDeleted = func(src, dst net.Addr, proto, user, realm string, relay net.Addr, peer net.IP) {
			if a.OnPermissionDeleted != nil {
				a.OnPermissionDeleted(src, dst, proto, user, realm, relay, peer)
			}
			b.OnPermissionDeleted(src, dst, proto, user, realm, relay, peer)
		}
	}
	if b.OnChannelCreated != nil {
		out.OnChannelCreated = func(src, dst net.Addr, proto, user, realm string, relay, peer net.Addr, ch uint16) {
			if a.OnChannelCreated != nil {
				a.OnChannelCreated(src, dst, proto, user, realm, relay, peer, ch)
			}
			b.OnChannelCreated(src, dst, proto, user, realm, relay, peer, ch)
		}
	}
	if b.OnChannelDeleted != nil {
		out.OnChannelDeleted = func(src, dst net.Addr, proto, user, realm string, relay, peer net.Addr, ch uint16) {
			if a.OnChannelDeleted != nil {
				a.OnChannelDeleted(src, dst, proto, user, realm, relay, peer, ch)
			}
			b.OnChannelDeleted(src, dst, proto, user, realm, relay, peer, ch)
		}
	}
	return out
}
