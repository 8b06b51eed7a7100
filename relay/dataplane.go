package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
)

// The forwarding data plane (internal/dataplane) owns the hot path:
// per-core workers read the listener and relay sockets with batched I/O and
// relay ChannelData on bound channels and Send/Data indications, both ways,
// themselves; pion still gets every other datagram (STUN requests, TCP
// clients' traffic) through the wrapped sockets. planeForwarder is the
// Forwarder on it; docs/dataplane.md has the design.

// planeSyncEvery is how often the data plane's per-core counters are added
// into the relay's own isthmus_relay_* counters.
const planeSyncEvery = 250 * time.Millisecond

// planeForwarder is the Forwarder on a dataplane.Plane.
type planeForwarder struct {
	s          *Server
	plane      *dataplane.Plane
	ps         *planeSync
	registered bool
}

// newForwarder returns the Forwarder cfg.DataPlane selects. A data plane
// that cannot start (another OS, no epoll) leaves pion relaying every
// datagram, unless raw_send: on requires it.
func (s *Server) newForwarder() (Forwarder, error) {
	if s.cfg.DataPlane == "off" {
		s.log.Info().Msg("data plane off: pion relays every datagram")
		return passThrough{}, nil
	}
	rawSend, _ := dataplane.ParseRawSendMode(s.cfg.RawSend) // validated with the config
	plane, err := dataplane.New(dataplane.Config{
		Logger:  s.log,
		RawSend: rawSend,
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
		s.log.Warn().Err(err).Msg("data plane unavailable: pion relays every datagram")
		return passThrough{}, nil
	}
	f := &planeForwarder{s: s, plane: plane}
	f.registered = s.reg.Register(plane) == nil
	f.ps = startPlaneSync(plane, s.metrics)
	s.log.Info().Int("workers", plane.Workers()).Bool("raw_send", plane.RawSending()).
		Msg("data plane on: per-core forwarding of channels and indications")
	return f, nil
}

func (f *planeForwarder) Listener(c *net.UDPConn) net.PacketConn {
	conn, err := f.plane.Listener(c)
	if err != nil {
		f.s.log.Warn().Err(err).Stringer("listen", c.LocalAddr()).Msg("data plane: listener not adopted, pion serves it")
		return c
	}
	return conn
}

func (f *planeForwarder) Relay(c *net.UDPConn, advertised netip.AddrPort) net.PacketConn {
	conn, err := f.plane.Relay(c, advertised)
	if err != nil {
		f.s.log.Warn().Err(err).Stringer("relay", c.LocalAddr()).Msg("data plane: relay socket not adopted, pion serves it")
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

func (f *planeForwarder) AttachRelay(src, dst, relay net.Addr) bool {
	return f.plane.AttachRelay(src, dst, relay)
}

func (f *planeForwarder) Close() error {
	err := f.plane.Close()
	f.ps.stop()
	if f.registered {
		f.s.reg.Unregister(f.plane)
	}
	return err
}

// planeSync adds the data plane's counters into the relay's own metrics
// (packets and bytes by direction and relayed family, drops by reason), so
// isthmus_relay_* keep counting every relayed datagram whichever path
// carried it. It reads per-core sums a few times a second, never per packet.
type planeSync struct {
	plane *dataplane.Plane
	m     *metrics
	last  dataplane.Stats
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func startPlaneSync(p *dataplane.Plane, m *metrics) *planeSync {
	ps := &planeSync{plane: p, m: m, quit: make(chan struct{}), done: make(chan struct{})}
	go ps.run()
	return ps
}

func (ps *planeSync) run() {
	defer close(ps.done)
	t := time.NewTicker(planeSyncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ps.sync()
		case <-ps.quit:
			ps.sync()
			return
		}
	}
}

// stop makes a last sync and ends the loop.
func (ps *planeSync) stop() {
	ps.once.Do(func() { close(ps.quit) })
	<-ps.done
}

func (ps *planeSync) sync() {
	st := ps.plane.Stats()
	add := func(c prometheus.Counter, now, before uint64) {
		if now > before {
			c.Add(float64(now - before))
		}
	}
	for cf := range 2 {
		for rf := range 2 {
			d := ps.m.dir[rf] // both index IPv4 as 0, IPv6 as 1
			c2p, p2c := dataplane.ClientToPeer, dataplane.PeerToClient
			add(d.toPeerPackets, st.Packets[c2p][cf][rf], ps.last.Packets[c2p][cf][rf])
			add(d.toPeerBytes, st.Bytes[c2p][cf][rf], ps.last.Bytes[c2p][cf][rf])
			// peer_to_client counts every datagram read from a relay
			// socket, also those then dropped without a permission
			// (drops_total{reason="no_permission"}), as relayConn does.
			add(d.fromPeerPackets, st.Packets[p2c][cf][rf]+st.PeerUnpermittedPackets[cf][rf],
				ps.last.Packets[p2c][cf][rf]+ps.last.PeerUnpermittedPackets[cf][rf])
			add(d.fromPeerBytes, st.Bytes[p2c][cf][rf]+st.PeerUnpermittedBytes[cf][rf],
				ps.last.Bytes[p2c][cf][rf]+ps.last.PeerUnpermittedBytes[cf][rf])
		}
	}
	for r := range dataplane.NumDropReasons {
		var c prometheus.Counter
		switch r {
		case dataplane.DropQuota:
			c = ps.m.drops.bandwidth
		case dataplane.DropSend:
			c = ps.m.drops.sendError
		case dataplane.DropNoPermission:
			c = ps.m.drops.noPermission
		case dataplane.DropTruncated:
			c = ps.m.drops.oversized
		default:
			c = ps.m.dropsVec.WithLabelValues(r.String())
		}
		add(c, st.Drops[r], ps.last.Drops[r])
	}
	ps.last = st
}
