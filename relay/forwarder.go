package relay

import (
	"net"
	"net/netip"

	"github.com/pion/turn/v5"
)

// Forwarder is the relay's one seam to a forwarding data plane. The relay
// creates every socket itself (listen.go, relayaddr.go) and hands pion what
// the Forwarder makes of it; pion stays the control plane and tells the
// Forwarder, through Events, when allocations, permissions and channels
// come and go. Config.DataPlane picks the implementation: the per-core data
// plane (internal/dataplane, "on") or a pass-through where pion relays
// every datagram ("off"); tests inject their own with WithForwarder.
type Forwarder interface {
	// Listener gets each per-core UDP listener socket and returns the
	// net.PacketConn pion's read loop uses (the request gate still wraps
	// the result, so credentials are checked either way).
	Listener(c *net.UDPConn) net.PacketConn
	// Relay gets each allocation's bound relay socket and the relayed
	// address advertised for it, and returns the net.PacketConn pion's
	// allocation uses (the relay wraps the result for counters, bandwidth
	// and the port pool).
	Relay(c *net.UDPConn, advertised netip.AddrPort) net.PacketConn
	// Events returns next with the Forwarder's handlers in front: each
	// callback updates the Forwarder's tables first, then calls next's, so
	// the relay's own handlers see a plane that already knows the change.
	Events(next turn.EventHandler) turn.EventHandler
	// FilterPeers applies a reloaded peer policy to live permissions: the
	// Forwarder stops relaying to and from permitted peers allowed refuses
	// (pion's own path is filtered in relayConn). It returns how many
	// permissions it suspended.
	FilterPeers(allowed func(netip.Addr) bool) int
	// AttachRelay gives the Forwarder a dual allocation's second relay
	// socket (already through Relay), named by its advertised address, for
	// the allocation of 5-tuple (src, dst); false: the relay serves that
	// family on pion's path itself (dualalloc.go).
	AttachRelay(src, dst, relay net.Addr) bool
	// PionPeers names the relay's own relay IPs: datagrams a Forwarder
	// would send to them go through pion instead, so relayConn can check
	// that the port is a live relayed transport address (relay-to-relay).
	PionPeers(ips []netip.Addr)
	// Close runs at Server.Close after pion has stopped.
	Close() error
}

// Option configures New beyond Config.
type Option func(*options)

type options struct {
	forwarder Forwarder
}

// WithForwarder makes the Server use f instead of the Forwarder that
// Config.DataPlane selects. The Server closes f.
func WithForwarder(f Forwarder) Option { return func(o *options) { o.forwarder = f } }

// passThrough is the Forwarder with no data plane: sockets go to pion
// unchanged and pion relays every datagram.
type passThrough struct{}

func (passThrough) Listener(c *net.UDPConn) net.PacketConn                { return c }
func (passThrough) Relay(c *net.UDPConn, _ netip.AddrPort) net.PacketConn { return c }
func (passThrough) Events(next turn.EventHandler) turn.EventHandler       { return next }
func (passThrough) FilterPeers(func(netip.Addr) bool) int                 { return 0 }
func (passThrough) AttachRelay(net.Addr, net.Addr, net.Addr) bool         { return false }
func (passThrough) PionPeers([]netip.Addr)                                {}
func (passThrough) Close() error                                          { return nil }
