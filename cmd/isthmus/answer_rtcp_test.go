package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/sdpcand"
)

// TestAnswerCommandTwoComponents: an ICE offer without a=rtcp-mux (baresip
// with "rtcp_mux no": candidates for components 1 and 2) is answered with
// both components and a=rtcp, ICE connects on both, and "--serve" echoes
// RTP on component 1 and RTCP on component 2. The peer is one pion/ice
// agent per component with shared credentials.
func TestAnswerCommandTwoComponents(t *testing.T) {
	const ufrag, pwd = "BaReSiPuFrAg", "baresippasswordbaresippw"
	var agents [2]*ice.Agent
	lines := []string{}
	rtpPort := 0
	for i := range agents {
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
			Network: "udp", Address: "127.0.0.1", Port: port, Component: uint16(i + 1), Foundation: "1",
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ia.AddVirtualCandidate(c, conn); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			rtpPort = port
		}
		lines = append(lines, "a=candidate:"+strings.TrimPrefix(c.Marshal(), "candidate:"))
		agents[i] = ia
	}
	offer := strings.Join(append([]string{
		"v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0", rtpPort), "a=rtpmap:0 PCMU/8000",
		"a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd,
	}, append(lines, "a=end-of-candidates")...), "\r\n") + "\r\n"

	answer, code, errs := startAnswer(t, []byte(offer), "--host", "127.0.0.1", "--serve", "4s")
	s, err := sdpcand.Parse(answer)
	if err != nil {
		t.Fatal(err)
	}
	m := s.Media[0]
	comps := map[uint16]int{}
	for _, c := range m.Candidates {
		comps[c.Component()]++
		if err := agents[c.Component()-1].AddRemoteCandidate(c); err != nil {
			t.Fatal(err)
		}
	}
	if comps[1] == 0 || comps[2] == 0 || m.RTCPMux || !strings.Contains(string(answer), "a=rtcp:") {
		t.Fatalf("want candidates of components 1 and 2, a=rtcp and no rtcp-mux, got %v:\n%s", comps, answer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conns [2]*ice.Conn
	for i, ia := range agents {
		c, err := ia.Dial(ctx, m.Ufrag, m.Pwd)
		if err != nil {
			t.Fatalf("component %d: %v", i+1, err)
		}
		conns[i] = c
	}
	echoRTP(t, conns[0])
	for i := range 3 {
		pkt := []byte(fmt.Sprintf("rtcp %d", i))
		if _, err := conns[1].Write(pkt); err != nil {
			t.Fatal(err)
		}
		_ = conns[1].SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		n, err := conns[1].Read(buf)
		if err != nil || string(buf[:n]) != string(pkt) {
			t.Fatalf("RTCP echo %d: %q, %v", i, buf[:n], err)
		}
	}
	waitExit(t, code, errs)
	if !strings.Contains(errs.String(), "rtcp: received 3 echoed 3") {
		t.Errorf("stderr %q lacks the RTCP echo count", errs.String())
	}
}
