package gather

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// twoComponentPeer is an ICE peer that does not multiplex RTCP, as baresip
// with "rtcp_mux no" is: one pion/ice agent per component, both with the
// same credentials, a host candidate each on 127.0.0.1, and an offer with
// no a=rtcp-mux listing both components.
type twoComponentPeer struct {
	agents [2]*ice.Agent
	offer  []byte
}

func newTwoComponentPeer(t *testing.T) *twoComponentPeer {
	t.Helper()
	const ufrag, pwd = "BaReSiPuFrAg", "baresippasswordbaresippw"
	p := &twoComponentPeer{}
	var lines []string
	var rtpPort int
	for i := range p.agents {
		comp := uint16(i + 1)
		ia, err := ice.NewAgentWithOptions(
			ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
			ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
			ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
			ice.WithLocalCredentials(ufrag, pwd),
		)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ia.Close() })
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := conn.LocalAddr().(*net.UDPAddr).Port
		c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
			Network: "udp", Address: "127.0.0.1", Port: port, Component: comp, Foundation: "1",
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ia.AddVirtualCandidate(c, conn); err != nil {
			t.Fatal(err)
		}
		if comp == 1 {
			rtpPort = port
		}
		lines = append(lines, "a=candidate:"+strings.TrimPrefix(c.Marshal(), "candidate:"))
		p.agents[i] = ia
	}
	p.offer = []byte(strings.Join(append([]string{
		"v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0", rtpPort), "a=rtpmap:0 PCMU/8000",
		"a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd,
	}, append(lines, "a=end-of-candidates")...), "\r\n") + "\r\n")
	return p
}

// TestAnswerTwoComponentOffer: an ICE offer without a=rtcp-mux gets an
// answer with candidates for components 1 and 2 and an a=rtcp line (RFC
// 3605), both components connect, and RTCP sent on the peer's component 2
// arrives on the answerer's MediaConn.RTCP, at component 2's address.
func TestAnswerTwoComponentOffer(t *testing.T) {
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}})
	testTwoComponents(t, ans, "host")
}

// TestAnswerTwoComponentOfferRelayed: an IPv6-only answerer reaches the
// IPv4 two-component peer through its IPv4 relay on both components
// (RFC 6157 §4.2 for RTCP too): component 2 has its own allocation.
func TestAnswerTwoComponentOfferRelayed(t *testing.T) {
	forEachTURN(t, func(t *testing.T, srv turnServer) {
		ans := newTestAgent(t, Config{
			HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
			TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
			RelayFamilies: []netaddr.Family{netaddr.IPv4},
		})
		testTwoComponents(t, ans, "relay")
	})
}

func testTwoComponents(t *testing.T, ans *Agent, wantRTCPType string) {
	peer := newTwoComponentPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := ans.Answer(ctx, peer.offer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdpcand.Parse(answer)
	if err != nil {
		t.Fatal(err)
	}
	m := s.Media[0]
	var rtcpCand ice.Candidate
	comps := map[uint16]int{}
	for _, c := range m.Candidates {
		comps[c.Component()]++
		if c.Component() == 2 && c.NetworkType() == ice.NetworkTypeUDP4 {
			rtcpCand = c
		}
	}
	if comps[1] == 0 || comps[2] == 0 || m.RTCPMux {
		t.Fatalf("answer: want candidates of components 1 and 2 and no rtcp-mux, got %v:\n%s", comps, answer)
	}
	if rtcpCand == nil || rtcpCand.Type().String() != wantRTCPType {
		t.Fatalf("answer: want an IPv4 %s candidate for component 2:\n%s", wantRTCPType, answer)
	}
	wantRTCP := fmt.Sprintf("a=rtcp:%d IN IP4 %s\r\n", rtcpCand.Port(), rtcpCand.Address())
	if !bytes.Contains(answer, []byte(wantRTCP)) {
		t.Errorf("answer lacks %q:\n%s", wantRTCP, answer)
	}

	// The peer is controlling (the offerer), one agent per component.
	var conns [2]*ice.Conn
	errs := make(chan error, 2)
	for i, ia := range peer.agents {
		go func() {
			c, err := ia.Dial(ctx, m.Ufrag, m.Pwd)
			conns[i] = c
			if err != nil {
				err = fmt.Errorf("component %d: %w", i+1, err)
			}
			errs <- err
		}()
	}
	for _, c := range m.Candidates {
		if err := peer.agents[c.Component()-1].AddRemoteCandidate(c); err != nil {
			t.Fatal(err)
		}
	}
	mc, err := ans.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range peer.agents {
		if err := <-errs; err != nil {
			t.Fatalf("peer: %v", err)
		}
	}
	rtcp := mc.RTCP()
	if rtcp == nil {
		t.Fatal("MediaConn.RTCP() is nil for a session without rtcp-mux")
	}
	// RTP on component 1, RTCP on component 2, each on its own path.
	for i, pkt := range [][]byte{[]byte("rtp packet"), []byte("rtcp packet")} {
		recv := net.Conn(mc)
		if i == 1 {
			recv = rtcp
		}
		if _, err := conns[i].Write(pkt); err != nil {
			t.Fatalf("peer write component %d: %v", i+1, err)
		}
		_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, err := recv.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], pkt) {
			t.Fatalf("component %d: read %q, %v; want %q", i+1, buf[:n], err, pkt)
		}
	}
	pair, err := peer.agents[1].GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("peer component 2 has no selected pair: %v", err)
	}
	if pair.Remote.Port() != rtcpCand.Port() {
		t.Errorf("peer's RTCP went to port %d, want component 2's %d", pair.Remote.Port(), rtcpCand.Port())
	}
	// And back: the answerer's RTCP reaches the peer's component 2.
	if _, err := rtcp.Write([]byte("rtcp back")); err != nil {
		t.Fatal(err)
	}
	_ = conns[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	if n, err := conns[1].Read(buf); err != nil || string(buf[:n]) != "rtcp back" {
		t.Fatalf("peer component 2 read %q, %v", buf[:n], err)
	}
}

// TestAnswerLegacyNoMux: a plain (non-ICE) offer without rtcp-mux gets
// a=rtcp at a port we hold, and no rtcp-mux.
func TestAnswerLegacyNoMux(t *testing.T) {
	ans := newTestAgent(t, Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}})
	offer := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	answer, err := ans.Answer(context.Background(), offer)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(answer, []byte("a=rtcp-mux")) || !bytes.Contains(answer, []byte("a=rtcp:")) {
		t.Fatalf("want a=rtcp and no rtcp-mux:\n%s", answer)
	}
	var port int
	for _, l := range strings.Split(string(answer), "\r\n") {
		if v, ok := strings.CutPrefix(l, "a=rtcp:"); ok {
			_, _ = fmt.Sscanf(v, "%d", &port)
		}
	}
	// The port is ours: binding it again fails.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err == nil {
		_ = c.Close()
		t.Fatalf("a=rtcp port %d is not held by the agent", port)
	}
}
