//go:build linux

package gather

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

const (
	rtpCount       = 200
	connectTimeout = 15 * time.Second
)

// connectPair runs offer/answer between two agents and connects both.
func connectPair(t *testing.T, off, ans *Agent) (offMedia, ansMedia *MediaConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	offer, err := off.Offer(ctx)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	answer, err := ans.Answer(ctx, offer)
	if err != nil {
		t.Fatalf("Answer: %v\noffer:\n%s", err, offer)
	}
	if err := off.SetRemoteAnswer(answer); err != nil {
		t.Fatalf("SetRemoteAnswer: %v\nanswer:\n%s", err, answer)
	}
	type res struct {
		m   *MediaConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := ans.Connect(ctx)
		ch <- res{m, err}
	}()
	offMedia, err = off.Connect(ctx)
	r := <-ch
	if err != nil || r.err != nil {
		t.Fatalf("Connect: offerer %v, answerer %v\noffer:\n%s\nanswer:\n%s", err, r.err, offer, answer)
	}
	return offMedia, r.m
}

// exchangeRTP sends rtpCount RTP packets from a to b and from b to a at
// once and checks that every sequence number arrives exactly once.
func exchangeRTP(t *testing.T, a, b net.Conn) {
	t.Helper()
	errs := make(chan error, 4)
	for _, dir := range []struct {
		from, to net.Conn
		ssrc     uint32
	}{{a, b, 0x1111}, {b, a, 0x2222}} {
		go func() { errs <- receiveRTP(dir.to, dir.ssrc) }()
		go func() { errs <- sendRTP(dir.from, dir.ssrc) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// rtpPacing is the gap between two test RTP packets: 20 times the rate of
// one G.711 call, yet slow enough that a loaded 2-core CI box drains every
// socket buffer on the path (this test is about loss on the path, not
// about kernel buffers).
const rtpPacing = time.Millisecond

// sendRTP sends rtpCount packets, one per rtpPacing.
func sendRTP(c net.Conn, ssrc uint32) error {
	payload := make([]byte, 160) // 20 ms of G.711
	tick := time.NewTicker(rtpPacing)
	defer tick.Stop()
	for i := range rtpCount {
		<-tick.C
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: ssrc}, Payload: payload}
		b, err := pkt.Marshal()
		if err != nil {
			return err
		}
		if _, err := c.Write(b); err != nil {
			return fmt.Errorf("ssrc %#x: write %d: %w", ssrc, i, err)
		}
	}
	return nil
}

func receiveRTP(c net.Conn, ssrc uint32) error {
	seen := make([]bool, rtpCount)
	got := 0
	buf := make([]byte, 1500)
	deadline := time.Now().Add(connectTimeout)
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	for got < rtpCount {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("ssrc %#x: received %d of %d: %w", ssrc, got, rtpCount, err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf[:n]); err != nil || pkt.SSRC != ssrc {
			continue // consent checks are STUN and never reach Read; be strict on RTP only
		}
		sn := int(pkt.SequenceNumber)
		if sn >= rtpCount || seen[sn] {
			return fmt.Errorf("ssrc %#x: unexpected or duplicate sequence %d", ssrc, sn)
		}
		seen[sn] = true
		got++
	}
	return nil
}

// TestConnectICE: offer/answer between two SDK agents, ICE connects and
// RTP flows both ways without loss.
func TestConnectICE(t *testing.T) {
	forEachTURN(t, testConnectICE)
}

func testConnectICE(t *testing.T, srv turnServer) {
	cases := []struct {
		name              string
		offCfg, ansCfg    Config
		wantOffLocalType  string
		wantOffLocalFam   netaddr.Family
		wantAnsRemoteType string
	}{
		{
			name:   "dual-stack host candidates on loopback",
			offCfg: Config{HostAddrs: []netip.Addr{lo4, lo6}},
			ansCfg: Config{HostAddrs: []netip.Addr{lo4, lo6}},
			// RFC 8421: IPv6 host pair preferred
			wantOffLocalType: "host", wantOffLocalFam: netaddr.IPv6, wantAnsRemoteType: "host",
		},
		{
			name: "RFC6157 4.2: IPv6-only offerer reaches IPv4-only answerer through its IPv4 relay",
			offCfg: Config{
				HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
				TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
				RelayFamilies: []netaddr.Family{netaddr.IPv4},
			},
			ansCfg:           Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}},
			wantOffLocalType: "relay", wantOffLocalFam: netaddr.IPv4, wantAnsRemoteType: "relay",
		},
		{
			name:   "IPv4-only offerer reaches IPv6-only answerer through the answerer's IPv6 relay",
			offCfg: Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}},
			ansCfg: Config{
				HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
				TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
			},
			wantOffLocalType: "host", wantOffLocalFam: netaddr.IPv4, wantAnsRemoteType: "host",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			off := newTestAgent(t, tc.offCfg)
			ans := newTestAgent(t, tc.ansCfg)
			om, am := connectPair(t, off, ans)
			exchangeRTP(t, om, am)
			op, ap := om.Selected(), am.Selected()
			if op.Mode != ModeICE || op.LocalType != tc.wantOffLocalType || op.LocalFamily != tc.wantOffLocalFam {
				t.Errorf("offerer path %s (%+v), want local %s/%s", op, op, tc.wantOffLocalType, tc.wantOffLocalFam)
			}
			if ap.RemoteType != tc.wantAnsRemoteType && ap.RemoteType != ice.CandidateTypePeerReflexive.String() {
				t.Errorf("answerer path %s, want remote %s", ap, tc.wantAnsRemoteType)
			}
		})
	}
}

// TestConnectLegacyPeer: the remote SDP has no ICE; media goes through our
// IPv4 relayed allocation (reached over IPv6) to the c=/m= address of a
// plain UDP socket, both ways, and the path says "legacy-relay".
func TestConnectLegacyPeer(t *testing.T) {
	forEachTURN(t, testConnectLegacyPeer)
}

func testConnectLegacyPeer(t *testing.T, srv turnServer) {
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = phone.Close() })
	phoneAP := phone.LocalAddr().(*net.UDPAddr).AddrPort()
	legacySDP := fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", phoneAP.Port())

	newAgent := func(t *testing.T) *Agent {
		return newTestAgent(t, Config{
			HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
			TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	cases := []struct {
		name string
		// negotiate returns our SDP (what the phone reads)
		negotiate func(t *testing.T, a *Agent) []byte
	}{
		{"IPv6-only offerer, IPv4 legacy answerer", func(t *testing.T, a *Agent) []byte {
			offer, err := a.Offer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.SetRemoteAnswer([]byte(legacySDP)); err != nil {
				t.Fatal(err)
			}
			return offer
		}},
		{"RFC6157 4.1 rule 2: IPv6-only answerer to an IPv4 legacy offer answers IP4", func(t *testing.T, a *Agent) []byte {
			answer, err := a.Answer(ctx, []byte(legacySDP))
			if err != nil {
				t.Fatal(err)
			}
			return answer
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t)
			ours := tc.negotiate(t, a)
			sess, err := sdpcand.Parse(ours)
			if err != nil {
				t.Fatalf("our SDP does not parse: %v\n%s", err, ours)
			}
			m := sess.Media[0]
			if m.Family != netaddr.IPv4 {
				t.Fatalf("our c= is %s %s, want IP4 (the relayed address)\n%s", m.NetType, m.Address, ours)
			}
			media, err := a.Connect(ctx)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			p := media.Selected()
			if p.Mode != ModeLegacyRelay || p.LocalType != "relay" || p.LocalFamily != netaddr.IPv4 || p.Remote != phoneAP {
				t.Errorf("path %s %+v", p, p)
			}
			ourAP := netip.AddrPortFrom(m.Addr, uint16(m.Port))
			if p.Local != ourAP {
				t.Errorf("media from %s, but our SDP says %s", p.Local, ourAP)
			}
			// The phone answers from its own socket; give it a conn view
			// bound to our relayed address.
			exchangeRTP(t, media, &fixedPeerConn{UDPConn: phone, peer: ourAP})
		})
	}
}

// fixedPeerConn is a legacy phone's view of the call: one UDP socket
// talking to one address.
type fixedPeerConn struct {
	*net.UDPConn
	peer netip.AddrPort
}

func (c *fixedPeerConn) Write(p []byte) (int, error) { return c.WriteToUDPAddrPort(p, c.peer) }

func (c *fixedPeerConn) Read(p []byte) (int, error) {
	for {
		n, from, err := c.ReadFromUDPAddrPort(p)
		if err != nil {
			return 0, err
		}
		if from == c.peer {
			return n, nil
		}
	}
}

// An offer whose first m-line has no codec in common is answered on the
// second one (RFC 3264 §6: the first is rejected with port 0), and media
// must flow to the second m-line's address, not the first's.
func TestConnectUsesAcceptedMedia(t *testing.T) {
	srv := startOurRelay(t)
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = phone.Close() })
	phoneAP := phone.LocalAddr().(*net.UDPAddr).AddrPort()
	// The first m-line points at a port nobody listens on.
	offer := fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 96\r\na=rtpmap:96 NOSUCH/8000\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", phoneAP.Port()+1, phoneAP.Port())
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
		TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
	})
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	answer, err := a.Answer(ctx, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := sdpcand.Parse(answer)
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, answer)
	}
	if len(sess.Media) != 2 || sess.Media[0].Port != 0 || sess.Media[1].Port == 0 {
		t.Fatalf("want m-line 0 rejected and m-line 1 accepted:\n%s", answer)
	}
	media, err := a.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if p := media.Selected(); p.Remote != phoneAP {
		t.Fatalf("media goes to %s, want the accepted m-line's %s", p.Remote, phoneAP)
	}
	ourAP := netip.AddrPortFrom(sess.Media[1].Addr, uint16(sess.Media[1].Port))
	exchangeRTP(t, media, &fixedPeerConn{UDPConn: phone, peer: ourAP})
}
