//go:build linux

package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
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

// TestPionServerThroughPlane runs pion/turn's server on the data plane and
// pion/turn's client against it: Allocate, then traffic both ways. pion's
// client starts with Send indications and switches to ChannelData once its
// ChannelBind succeeds; from then on the fast path carries everything.
func TestPionServerThroughPlane(t *testing.T) {
	p, err := New(Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	ln, err := p.Listener(listenUDP(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
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
		EventHandler: p.EventHandler(turn.EventHandler{}),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: ln,
			RelayAddressGenerator: &planeRelays{
				RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{
					RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1",
				},
				plane: p,
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	clientConn := listenUDP(t, "udp4", "127.0.0.1:0")
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: ln.local.String(),
		STUNServerAddr: ln.local.String(),
		Conn:           clientConn,
		Username:       "alice",
		Password:       "secret",
		Realm:          realm,
		LoggerFactory:  logs,
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
		t.Fatalf("Allocate through the plane: %v", err)
	}
	t.Cleanup(func() { _ = relayConn.Close() })

	peer := listenUDP(t, "udp4", "127.0.0.1:0")
	relayed := relayConn.LocalAddr()
	buf := make([]byte, 1500)

	// Phase 1: until the channel is bound (Send/Data indications, pion's
	// slow path); phase 2: counted exchanges that must use the fast path.
	exchange := func(i int) {
		t.Helper()
		msg := fmt.Appendf(nil, "c2p-%d", i)
		if _, err := relayConn.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		got, from := recv(t, peer)
		if !bytes.Equal(got, msg) || from.String() != relayed.String() {
			t.Fatalf("peer got %q from %v, want %q from %v", got, from, msg, relayed)
		}
		reply := fmt.Appendf(nil, "p2c-%d", i)
		if _, err := peer.WriteToUDPAddrPort(reply, netip.MustParseAddrPort(relayed.String())); err != nil {
			t.Fatal(err)
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from2, err := relayConn.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], reply) || from2.String() != peer.LocalAddr().String() {
			t.Fatalf("client got %q from %v (%v), want %q from %v", buf[:n], from2, err, reply, peer.LocalAddr())
		}
	}
	exchange(-1)
	eventually(t, "channel bound", func() bool {
		a := p.allocByRelay(relayed)
		return a != nil && len(a.state.Load().channels) == 1
	})
	// The first reply went either way (Data indication or ChannelData);
	// wait until its wake-up's counters are published.
	eventually(t, "first exchange counted", func() bool {
		st := p.Stats()
		return st.SlowRelay+st.Packets[PeerToClient][0][0] >= 1
	})
	before := p.Stats()
	const n = 100
	for i := range n {
		exchange(i)
	}
	eventually(t, "fast-path counters", func() bool {
		st := p.Stats()
		return st.Packets[ClientToPeer][0][0]-before.Packets[ClientToPeer][0][0] == n &&
			st.Packets[PeerToClient][0][0]-before.Packets[PeerToClient][0][0] == n
	})
	after := p.Stats()
	// The ChannelBind request's wake-up may publish its slow-path count
	// inside the window; nothing else of the client's should reach pion.
	if slow := after.SlowRelay - before.SlowRelay; slow != 0 {
		t.Errorf("%d peer datagrams of a bound channel reached pion", slow)
	}
	if slow := after.SlowListener - before.SlowListener; slow > 2 {
		t.Errorf("%d client datagrams reached pion during %d ChannelData exchanges", slow, n)
	}
	t.Logf("fast path: %d+%d datagrams, slow path during the window: listener %d relay %d",
		n, n, after.SlowListener-before.SlowListener, after.SlowRelay-before.SlowRelay)

	// Deallocation through pion reaches the plane.
	_ = relayConn.Close()
	eventually(t, "allocation removed", func() bool { return p.Stats().Allocations == 0 })
}

// allocByRelay finds the allocation of a relayed address (tests).
func (p *Plane) allocByRelay(relay net.Addr) *alloc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocByRelayLocked(relay)
}
