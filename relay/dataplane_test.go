package relay

import (
	"bytes"
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// gathered sums the samples of metric name whose labels include every
// "key=value" in labels.
func gathered(t *testing.T, s *Server, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			for _, want := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName()+"="+lp.GetValue() == want {
						found = true
					}
				}
				if !found {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// channelLeg allocates (with the given REQUESTED-ADDRESS-FAMILY, 0 for
// none), binds channel 0x4001 to a new loopback peer of the relayed family,
// and exchanges n datagrams each way, checking every byte.
func channelLeg(t *testing.T, s *Server, client netaddr.Family, reqFamily byte, n int) netaddr.Family {
	t.Helper()
	rc := newRawClient(t, s.udpAddr(t, client), "alice", "secret")
	attrs := []stun.Setter{transportUDP()}
	if reqFamily != 0 {
		attrs = append(attrs, addressFamily(reqFamily))
	}
	resp, code := rc.request(stun.MethodAllocate, attrs...)
	if code != 0 {
		t.Fatalf("allocate: %d", code)
	}
	relayed := relayedAddr(t, resp)
	peerIP := "127.0.0.1"
	if relayed.Addr().Is6() {
		peerIP = "::1"
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(peerIP)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	peerAP := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, code := rc.request(stun.MethodChannelBind, peer(peerAP),
		stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40, 0x01, 0, 0}}); code != 0 {
		t.Fatalf("channel bind: %d", code)
	}
	buf := make([]byte, 2048)
	for i := range n {
		payload := fmt.Appendf(nil, "rtp %d from %s", i, client)
		frame := append([]byte{0x40, 0x01, 0, byte(len(payload))}, payload...)
		if _, err := rc.c.WriteTo(frame, rc.server); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:k], payload) ||
			netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != relayed {
			t.Fatalf("peer got %q from %v (%v), want %q from %v", buf[:k], from, err, payload, relayed)
		}
		reply := fmt.Appendf(nil, "reply %d", i)
		if _, err := pc.WriteToUDPAddrPort(reply, from); err != nil {
			t.Fatal(err)
		}
		_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err = rc.c.ReadFromUDPAddrPort(buf)
		// RFC 8656 12.5: over UDP the relay MAY pad to 4 bytes (pion
		// does, the data plane does not).
		want := append([]byte{0x40, 0x01, 0, byte(len(reply))}, reply...)
		if err != nil || k < len(want) || k-len(want) > 3 || !bytes.Equal(buf[:len(want)], want) ||
			!bytes.Equal(buf[len(want):k], make([]byte, k-len(want))) {
			t.Fatalf("client got % x (%v), want ChannelData % x (+ zero padding)", buf[:k], err, want)
		}
	}
	return netaddr.FamilyOf(relayed.Addr())
}

// TestDataPlaneCarriesBoundChannels: with the data plane installed, bound
// channels are relayed by it both ways (pion's per-allocation goroutines
// see none of it), for the mission's IPv6 client on an IPv4 relay and the
// reverse, and the relay's own counters still count every datagram.
func TestDataPlaneCarriesBoundChannels(t *testing.T) {
	s := startTestServer(t, nil)
	const n = 40
	for _, leg := range []struct {
		name   string
		client netaddr.Family
		req    byte
		relay  netaddr.Family
	}{
		{"RFC6156: IPv6 client, no family requested, IPv4 relay", netaddr.IPv6, 0, netaddr.IPv4},
		{"RFC6156: IPv4 client, IPv6 relay requested", netaddr.IPv4, 0x02, netaddr.IPv6},
	} {
		t.Run(leg.name, func(t *testing.T) {
			slowRelay := gathered(t, s, "isthmus_relay_dataplane_slowpath_packets_total", "socket=relay")
			fast := func(dir string) float64 {
				return gathered(t, s, "isthmus_relay_packets_total", "direction="+dir,
					"family="+leg.relay.Label(), "path=dataplane")
			}
			relayPkts := func(dir string) float64 {
				return gathered(t, s, "isthmus_relay_packets_total", "direction="+dir, "family="+leg.relay.Label())
			}
			c2p, p2c := fast("client_to_peer"), fast("peer_to_client")
			rc2p, rp2c := relayPkts("client_to_peer"), relayPkts("peer_to_client")

			if got := channelLeg(t, s, leg.client, leg.req, n); got != leg.relay {
				t.Fatalf("relayed family %s, want %s", got, leg.relay)
			}
			waitFor(t, "fast-path counters", func() bool {
				return fast("client_to_peer")-c2p == n && fast("peer_to_client")-p2c == n
			})
			if d := gathered(t, s, "isthmus_relay_dataplane_slowpath_packets_total", "socket=relay") - slowRelay; d != 0 {
				t.Errorf("%v peer datagrams of a bound channel went to pion", d)
			}
			// The relay's own counters include the fast path.
			waitFor(t, "isthmus_relay_packets_total", func() bool {
				return relayPkts("client_to_peer")-rc2p == n && relayPkts("peer_to_client")-rp2c == n
			})
		})
	}
}

// TestDataPlaneOff: data_plane: off leaves every datagram to pion, and
// channels still work.
func TestDataPlaneOff(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.DataPlane = "off" })
	before := gathered(t, s, "isthmus_relay_packets_total", "direction=client_to_peer")
	channelLeg(t, s, netaddr.IPv6, 0, 5)
	// pion counts a datagram after its send returns, which may be after
	// the peer has read it.
	waitFor(t, "pion relayed 5 datagrams", func() bool {
		return gathered(t, s, "isthmus_relay_packets_total", "direction=client_to_peer")-before == 5
	})
	if gathered(t, s, "isthmus_relay_dataplane_wakeups_total") != 0 {
		t.Fatal("data plane metrics present with the data plane off")
	}
}

// Every data plane drop reason is one of the relay's: one vocabulary, so a
// drop is counted under one name whichever path saw it.
func TestDropVocabulary(t *testing.T) {
	for r := range dataplane.NumDropReasons {
		if name := dropReasonNames[planeDrops[r]]; name != r.String() {
			t.Errorf("data plane reason %q has no relay reason (mapped to %q)", r, name)
		}
	}
}
