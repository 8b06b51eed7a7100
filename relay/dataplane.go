//go:build linux

package relay

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
)

// The forwarding data plane (internal/dataplane, issue 5) owns the hot
// path: per-core workers read the listener and relay sockets with batched
// I/O and relay ChannelData on bound channels and Send/Data indications,
// both ways, themselves; pion still gets every other datagram (STUN
// requests, TCP clients' traffic) through the wrapped sockets, and tells the
// plane through its EventHandler when allocations, permissions and channels
// come and go. It plugs into the seam in hooks.go; docs/dataplane.md has the
// design.

// dataPlaneEnv switches the data plane off when set to "off" (or "0",
// "false"): pion then relays every datagram itself, for comparisons.
const dataPlaneEnv = "ISTHMUS_DATAPLANE"

// planeSyncEvery is how often the data plane's per-core counters are added
// into the relay's own isthmus_relay_* counters.
const planeSyncEvery = 250 * time.Millisecond

func init() { installHooks = dataPlaneHooks }

func dataPlaneHooks(s *Server) hooks {
	h := defaultHooks()
	switch os.Getenv(dataPlaneEnv) {
	case "off", "0", "false":
		s.log.Info("data plane off: pion relays every datagram", slog.String("env", dataPlaneEnv))
		return h
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
			h.err = fmt.Errorf("relay: raw_send is on: %w", err)
			return h
		}
		s.log.Warn("data plane unavailable: pion relays every datagram", slog.Any("error", err))
		return h
	}
	registered := s.reg.Register(plane) == nil
	ps := startPlaneSync(plane, s.metrics)
	s.log.Info("data plane on: per-core forwarding of channels and indications", slog.Int("workers", plane.Workers()), slog.Bool("raw_send", plane.RawSending()))

	h.wrapListener = func(c *net.UDPConn) net.PacketConn {
		conn, err := plane.Listener(c)
		if err != nil {
			s.log.Warn("data plane: listener not adopted, pion serves it", slog.Any("error", err), slog.Any("listen", c.LocalAddr()))
			return c
		}
		return conn
	}
	h.wrapRelay = func(c *net.UDPConn, info relayInfo) net.PacketConn {
		conn, err := plane.Relay(c, info.advertise)
		if err != nil {
			s.log.Warn("data plane: relay socket not adopted, pion serves it", slog.Any("error", err), slog.Any("relay", info.bind))
			return c
		}
		return conn
	}
	h.events = plane.EventHandler(turn.EventHandler{})
	h.filterPeers = plane.SetPeerFilter
	h.pionPeers = plane.SetPionPeers
	h.attachRelay = plane.AttachRelay
	h.allocCounts = func(src, dst net.Addr) (toPeer, fromPeer [2]uint64) {
		c, _ := plane.AllocationCounts(src, dst)
		c2p, p2c := dataplane.ClientToPeer, dataplane.PeerToClient
		return [2]uint64{c.Packets[c2p], c.Bytes[c2p]}, [2]uint64{c.Packets[p2c], c.Bytes[p2c]}
	}
	h.close = func() error {
		err := plane.Close()
		ps.stop()
		if registered {
			s.reg.Unregister(plane)
		}
		return err
	}
	return h
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
