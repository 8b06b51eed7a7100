//go:build linux

package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// planeRelays is a RelayAddressGenerator that puts every relay socket of
// pion's static generator on the data plane.
type planeRelays struct {
	turn.RelayAddressGeneratorStatic
	plane *Plane
}

func (g *planeRelays) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	adv, err := addrPortOf(addr)
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	c, err := g.plane.Relay(pc, adv)
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	return c, addr, nil
}

// pionSetup is a pion/turn server on loopback, optionally on a data plane,
// with a pion/turn client holding one allocation and a peer socket.
type pionSetup struct {
	plane     *Plane // nil: pion alone
	relayConn net.PacketConn
	peer      *net.UDPConn
	server    string
	logs      logging.LoggerFactory
}

func startPion(t testing.TB, withPlane bool) *pionSetup {
	t.Helper()
	s := &pionSetup{}
	lnConn := listenUDP(t, "udp4", "127.0.0.1:0")
	var ln net.PacketConn = lnConn
	var gen turn.RelayAddressGenerator = &turn.RelayAddressGeneratorStatic{
		RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1",
	}
	events := turn.EventHandler{}
	if withPlane {
		p, err := New(Config{Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		s.plane = p
		if ln, err = p.Listener(lnConn); err != nil {
			t.Fatal(err)
		}
		gen = &planeRelays{
			RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1",
			},
			plane: p,
		}
		events = p.EventHandler(events)
	}
	const realm = "isthmus.test"
	key := turn.GenerateAuthKey("alice", realm, "secret")
	logs := logging.NewDefaultLoggerFactory()
	logs.DefaultLogLevel = logging.LogLevelError
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         realm,
		LoggerFactory: logs,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return ra.Username, key, ra.Username == "alice"
		},
		EventHandler:      events,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: ln, RelayAddressGenerator: gen}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	s.server, s.logs = ln.LocalAddr().String(), logs
	s.relayConn, s.peer = s.allocate(t)
	return s
}

// allocate runs one more pion/turn client with an allocation, and a peer.
func (s *pionSetup) allocate(t testing.TB) (net.PacketConn, *net.UDPConn) {
	t.Helper()
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: s.server,
		STUNServerAddr: s.server,
		Conn:           listenUDP(t, "udp4", "127.0.0.1:0"),
		Username:       "alice",
		Password:       "secret",
		Realm:          "isthmus.test",
		LoggerFactory:  s.logs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relayConn.Close() })
	return relayConn, listenUDP(t, "udp4", "127.0.0.1:0")
}

// exchange sends msg client to peer and reply back, and checks both.
func (s *pionSetup) exchange(t testing.TB, msg, reply []byte, buf []byte) {
	if _, err := s.relayConn.WriteTo(msg, s.peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = s.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := s.peer.ReadFromUDPAddrPort(buf)
	relayed := s.relayConn.LocalAddr().String()
	if err != nil || !bytes.Equal(buf[:n], msg) || from.String() != relayed {
		t.Fatalf("peer got %q from %v (%v), want %q from %v", buf[:n], from, err, msg, relayed)
	}
	if _, err := s.peer.WriteToUDPAddrPort(reply, from); err != nil {
		t.Fatal(err)
	}
	_ = s.relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from2, err := s.relayConn.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], reply) || from2.String() != s.peer.LocalAddr().String() {
		t.Fatalf("client got %q from %v (%v), want %q from %v", buf[:n], from2, err, reply, s.peer.LocalAddr())
	}
}

// TestPionServerThroughPlane runs pion/turn's server on the data plane and
// pion/turn's client against it: Allocate, then traffic both ways. pion's
// client starts with Send indications and switches to ChannelData once its
// ChannelBind succeeds; from then on the fast path carries everything.
func TestPionServerThroughPlane(t *testing.T) {
	s := startPion(t, true)
	p := s.plane
	buf := make([]byte, 1500)

	// Until pion's client has its ChannelBind answered it sends Send
	// indications (pion's path). Exchange until one round trip is relayed
	// on the fast path both ways.
	warm := false
	for i := 0; i < 200 && !warm; i++ {
		b := p.Stats()
		s.exchange(t, fmt.Appendf(nil, "warm-c2p-%d", i), fmt.Appendf(nil, "warm-p2c-%d", i), buf)
		var c2p, p2c bool
		eventually(t, "warm-up exchange counted", func() bool {
			st := p.Stats()
			c2p = st.Packets[ClientToPeer][0][0] > b.Packets[ClientToPeer][0][0]
			p2c = st.Packets[PeerToClient][0][0] > b.Packets[PeerToClient][0][0]
			return (c2p || st.SlowListener > b.SlowListener) && (p2c || st.SlowRelay > b.SlowRelay)
		})
		warm = c2p && p2c
	}
	if !warm {
		t.Fatal("pion's client never switched to ChannelData")
	}
	before := p.Stats()
	const n = 100
	for i := range n {
		s.exchange(t, fmt.Appendf(nil, "c2p-%d", i), fmt.Appendf(nil, "p2c-%d", i), buf)
	}
	eventually(t, "fast-path counters", func() bool {
		st := p.Stats()
		return st.Packets[ClientToPeer][0][0]-before.Packets[ClientToPeer][0][0] == n &&
			st.Packets[PeerToClient][0][0]-before.Packets[PeerToClient][0][0] == n
	})
	after := p.Stats()
	if slow := after.SlowRelay - before.SlowRelay; slow != 0 {
		t.Errorf("%d peer datagrams of a bound channel reached pion", slow)
	}
	// The ChannelBind request's wake-up may publish its slow-path count
	// inside the window; nothing else of the client's should reach pion.
	if slow := after.SlowListener - before.SlowListener; slow > 2 {
		t.Errorf("%d client datagrams reached pion during %d ChannelData exchanges", slow, n)
	}
	t.Logf("fast path: %d+%d datagrams, slow path during the window: listener %d relay %d",
		n, n, after.SlowListener-before.SlowListener, after.SlowRelay-before.SlowRelay)

	// Deallocation through pion reaches the plane.
	_ = s.relayConn.Close()
	eventually(t, "allocation removed", func() bool { return p.Stats().Allocations == 0 })
}

// BenchmarkPionRoundTrip is the before/after: pion/turn's client and a
// peer exchange 172-byte datagrams over a bound channel through pion/turn's
// server alone ("pion") and through pion/turn on the data plane ("plane").
// One op is one round trip (two relayed datagrams); client and peer costs
// are the same in both, so the difference is the server's.
func BenchmarkPionRoundTrip(b *testing.B) {
	for _, withPlane := range []bool{false, true} {
		name := "pion"
		if withPlane {
			name = "plane"
		}
		b.Run(name, func(b *testing.B) {
			s := startPion(b, withPlane)
			buf := make([]byte, 1500)
			msg, reply := make([]byte, rtpSize), make([]byte, rtpSize)
			msg[0], reply[0] = 1, 2
			// Warm up until pion's client has its channel bound.
			for range 20 {
				s.exchange(b, msg, reply, buf)
			}
			time.Sleep(50 * time.Millisecond) // benchmark warm-up only: let the ChannelBind settle
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.exchange(b, msg, reply, buf)
			}
		})
	}
}

// BenchmarkPionLoad is the before/after under load: 32 pion/turn clients
// with a bound channel each, 64 datagrams in flight, peers echoing. One op
// is one round trip (two relayed 172-byte datagrams). Run with
// -cpuprofile and look at the server's share (pion's readLoop and
// packetConnHandler, or the plane's workers) in go tool pprof -top.
func BenchmarkPionLoad(b *testing.B) {
	const legs, window = 32, 64
	for _, withPlane := range []bool{false, true} {
		name := map[bool]string{false: "pion", true: "plane"}[withPlane]
		b.Run(name, func(b *testing.B) {
			s := startPion(b, withPlane)
			relays := []net.PacketConn{s.relayConn}
			peers := []*net.UDPConn{s.peer}
			for len(relays) < legs {
				r, p := s.allocate(b)
				relays, peers = append(relays, r), append(peers, p)
			}
			msg := make([]byte, rtpSize)
			buf := make([]byte, 1500)
			for i := range legs { // warm up: permissions and channels
				w := &pionSetup{relayConn: relays[i], peer: peers[i]}
				for range 20 {
					w.exchange(b, msg, msg, buf)
				}
			}
			time.Sleep(50 * time.Millisecond) // benchmark warm-up only: let the ChannelBinds settle
			credits := make(chan struct{}, window)
			for range window {
				credits <- struct{}{}
			}
			stop := make(chan struct{})
			for i := range legs {
				go func() { // peer: echo to the relayed address
					buf := make([]byte, 1500)
					for {
						n, from, err := peers[i].ReadFromUDPAddrPort(buf)
						if err != nil {
							return
						}
						_, _ = peers[i].WriteToUDPAddrPort(buf[:n], from)
					}
				}()
				go func() { // client: each echo returns a credit
					buf := make([]byte, 1500)
					for {
						if _, _, err := relays[i].ReadFrom(buf); err != nil {
							return
						}
						select {
						case credits <- struct{}{}:
						case <-stop:
							return
						}
					}
				}()
			}
			for i := range legs {
				_ = peers[i].SetReadDeadline(time.Time{})
				_ = relays[i].SetReadDeadline(time.Time{})
			}
			b.Cleanup(func() { close(stop) })
			b.ReportAllocs()
			b.SetBytes(2 * rtpSize)
			b.ResetTimer()
			timeout := time.NewTimer(time.Minute)
			defer timeout.Stop()
			var before Stats
			if s.plane != nil {
				before = s.plane.Stats()
			}
			for i := range b.N + window {
				select {
				case <-credits:
				case <-timeout.C:
					b.Fatalf("round trip %d: no echo within a minute (datagram lost?)", i)
				}
				if i < b.N {
					leg := i % legs
					if _, err := relays[leg].WriteTo(msg, peers[leg].LocalAddr()); err != nil {
						b.Fatal(err)
					}
				}
			}
			if s.plane != nil {
				b.StopTimer()
				st := s.plane.Stats()
				var pkts uint64
				for d := range numDirs {
					pkts += st.Packets[d][0][0] - before.Packets[d][0][0]
				}
				if w := st.Wakeups - before.Wakeups; w > 0 {
					b.ReportMetric(float64(pkts)/float64(w), "pkts/wakeup")
					b.ReportMetric(float64(pkts)/float64(st.ReadCalls-before.ReadCalls+st.WriteCalls-before.WriteCalls), "pkts/call")
				}
			}
		})
	}
}
