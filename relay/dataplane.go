//go:build linux

package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
)

// The forwarding data plane (internal/dataplane) owns the hot path:
// per-core workers read the listener and relay sockets with batched I/O and
// relay ChannelData on bound channels and Send/Data indications, both ways,
// themselves; pion still gets every other datagram (STUN requests, TCP
// clients' traffic) through the wrapped sockets. planeForwarder is the
// Forwarder on it; docs/dataplane.md has the design.

// planeForwarder is the Forwarder on a dataplane.Plane.
type planeForwarder struct {
	s     *Server
	plane *dataplane.Plane
}

// newForwarder returns the Forwarder cfg.DataPlane selects. A data plane
// that cannot start (another OS, no epoll) leaves pion relaying every
// datagram, unless raw_send: on requires it.
func (s *Server) newForwarder() (Forwarder, error) {
	if s.cfg.DataPlane == DataPlaneOff {
		s.log.Info("data plane off: pion relays every datagram")
		return passThrough{}, nil
	}
	rawSend := s.res.rawSend
	plane, err := dataplane.New(dataplane.Config{
		Logger:    s.log,
		RawSend:   rawSend,
		ForceDSCP: s.cfg.DSCP >= 0,
		DSCP:      uint8(max(s.cfg.DSCP, 0)), //nolint:gosec // validated 0..63
		BandwidthFunc: func() int64 {
			if l := s.limits.Load(); l != nil {
				return int64(l.bandwidth)
			}
			return 0
		},
	})
	if err != nil {
		if rawSend == dataplane.RawSendOn {
			return nil, fmt.Errorf("relay: raw_send is on: %w", err)
		}
		s.log.Warn("data plane unavailable: pion relays every datagram", slog.Any("error", err))
		return passThrough{}, nil
	}
	f := &planeForwarder{s: s, plane: plane}
	add := f.addStats
	s.metrics.ctrs.extra.Store(&add)
	s.log.Info("data plane on: per-core forwarding of channels and indications",
		slog.Int("workers", plane.Workers()), slog.Bool("raw_send", plane.RawSending()))
	return f, nil
}

func (f *planeForwarder) Listener(c *net.UDPConn) net.PacketConn {
	conn, err := f.plane.Listener(c)
	if err != nil {
		f.s.log.Warn("data plane: listener not adopted, pion serves it", slog.Any("error", err), slog.Any("listen", c.LocalAddr()))
		return c
	}
	return conn
}

func (f *planeForwarder) Relay(c *net.UDPConn, advertised netip.AddrPort) net.PacketConn {
	conn, err := f.plane.Relay(c, advertised)
	if err != nil {
		f.s.log.Warn("data plane: relay socket not adopted, pion serves it", slog.Any("error", err), slog.Any("relay", c.LocalAddr()))
		return c
	}
	return conn
}

func (f *planeForwarder) Events(next turn.EventHandler) turn.EventHandler {
	return f.plane.EventHandler(next)
}

func (f *planeForwarder) FilterPeers(allowed func(netip.Addr) bool) int {
	return f.plane.SetPeerFilter(allowed)
}

// AllocationCounts is the plane's share of one allocation's session
// counts (allocationCounter), read once when its relay socket closes.
func (f *planeForwarder) AllocationCounts(src, dst net.Addr) (toPeer, fromPeer [2]uint64) {
	c, _ := f.plane.AllocationCounts(src, dst)
	c2p, p2c := dataplane.ClientToPeer, dataplane.PeerToClient
	return [2]uint64{c.Packets[c2p], c.Bytes[c2p]}, [2]uint64{c.Packets[p2c], c.Bytes[p2c]}
}

func (f *planeForwarder) AttachRelay(src, dst, relay net.Addr) bool {
	return f.plane.AttachRelay(src, dst, relay)
}

func (f *planeForwarder) PionPeers(ips []netip.Addr) { f.plane.SetPionPeers(ips) }

func (f *planeForwarder) Close() error {
	return f.plane.Close()
}

// planeDrops maps each data plane drop reason to the relay's reason of the
// same name: one vocabulary (TestDropVocabulary checks every name exists).
var planeDrops = func() (m [dataplane.NumDropReasons]dropReason) {
	for r := range dataplane.NumDropReasons {
		m[r] = dropRequestError
		for i, name := range dropReasonNames {
			if name == r.String() {
				m[r] = dropReason(i)
			}
		}
	}
	return m
}()

// addStats adds the data plane's totals (summed over its cores, per
// scrape, never per packet) into a snapshot of the counter table.
func (f *planeForwarder) addStats(v *[numCtr]uint64) {
	st := f.plane.Stats()
	for cf := range 2 {
		for rf := range 2 { // both index IPv4 as 0, IPv6 as 1, as familyIndex
			c2p, p2c := dataplane.ClientToPeer, dataplane.PeerToClient
			v[pktID(ctrPackets, pathPlane, dirToPeer, rf)] += st.Packets[c2p][cf][rf]
			v[pktID(ctrBytes, pathPlane, dirToPeer, rf)] += st.Bytes[c2p][cf][rf]
			// peer_to_client counts every datagram read from a relay
			// socket, also those then dropped without a permission
			// (drops_total{reason="no_permission"}), as relayConn does.
			v[pktID(ctrPackets, pathPlane, dirToClient, rf)] += st.Packets[p2c][cf][rf] + st.PeerUnpermittedPackets[cf][rf]
			v[pktID(ctrBytes, pathPlane, dirToClient, rf)] += st.Bytes[p2c][cf][rf] + st.PeerUnpermittedBytes[cf][rf]
		}
	}
	for r, n := range st.Drops {
		v[ctrDrops+ctrID(planeDrops[r])] += n
	}
	v[ctrSlowpath] += st.SlowListener
	v[ctrSlowpath+1] += st.SlowRelay
	v[ctrIndications] += st.Indications[dataplane.ClientToPeer]
	v[ctrIndications+1] += st.Indications[dataplane.PeerToClient]
	v[ctrWakeups] += st.Wakeups
	v[ctrBatchCalls] += st.ReadCalls
	v[ctrBatchCalls+1] += st.WriteCalls
	v[ctrBatchCalls+2] += st.RawWriteCalls
	v[ctrReadErrors] += st.ReadErrors
}
