package sdpcand_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// An IPv6-only softphone offers its IPv6 host candidate and the IPv4 address
// its TURN server relayed for it; the IPv4 relayed address goes in c=/m= so
// an IPv4-only phone without ICE can answer.
func ExampleBuildOffer() {
	host, _ := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network: "udp", Address: "2001:db8::10", Port: 40000, Component: 1, Priority: 2130706431, Foundation: "1",
	})
	relay, _ := ice.NewCandidateRelay(&ice.CandidateRelayConfig{
		Network: "udp", Address: "203.0.113.5", Port: 50000, Component: 1, Priority: 16777215, Foundation: "2",
		RelAddr: "2001:db8::10", RelPort: 40000,
	})
	offer, err := sdpcand.BuildOffer(sdpcand.OfferParams{
		SessionID:  1,
		Ufrag:      "Ab3d",
		Pwd:        "0123456789abcdefghijkl",
		Candidates: []ice.Candidate{host, relay},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(offer), "\r\n", "\n"))
	// Output:
	// v=0
	// o=- 1 1 IN IP4 203.0.113.5
	// s=-
	// t=0 0
	// m=audio 50000 RTP/AVP 0 8 101
	// c=IN IP4 203.0.113.5
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:101 telephone-event/8000
	// a=fmtp:101 0-16
	// a=rtcp-mux
	// a=sendrecv
	// a=ice-ufrag:Ab3d
	// a=ice-pwd:0123456789abcdefghijkl
	// a=candidate:1 1 udp 2130706431 2001:db8::10 40000 typ host
	// a=candidate:2 1 udp 16777215 203.0.113.5 50000 typ relay raddr 2001:db8::10 rport 40000
	// a=end-of-candidates
}

// A dual-stack offer (RFC 5118's inv-mult-sdp: audio over IPv4, video over
// IPv6) answered by an agent that has an IPv4 relayed address only. Audio
// is answered in IP4 (RFC 6157 §4.1 rule 2), video is rejected with port 0
// and still in IP6. Without an IPv4 address the answer is refused.
func ExampleBuildAnswer() {
	offer, err := sdpcand.Parse([]byte("v=0\n" +
		"o=bob 280744730 28977631 IN IP4 host.example.com\n" +
		"s=\n" +
		"t=0 0\n" +
		"m=audio 22334 RTP/AVP 0\n" +
		"c=IN IP4 192.0.2.1\n" +
		"m=video 6024 RTP/AVP 107\n" +
		"c=IN IP6 2001:db8::1\n" +
		"a=rtpmap:107 H263-1998/90000 \n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, err := sdpcand.BuildAnswer(offer, sdpcand.AnswerParams{
		SessionID: 2,
		Addrs:     map[netaddr.Family]netip.AddrPort{netaddr.IPv4: netip.MustParseAddrPort("203.0.113.5:50000")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(answer), "\r\n", "\n"))

	_, err = sdpcand.BuildAnswer(offer, sdpcand.AnswerParams{
		Addrs: map[netaddr.Family]netip.AddrPort{netaddr.IPv6: netip.MustParseAddrPort("[2001:db8::10]:40000")},
	})
	fmt.Println("IPv6-only agent, 488:", errors.Is(err, sdpcand.ErrNoAddressOfFamily))
	// Output:
	// v=0
	// o=- 2 2 IN IP4 203.0.113.5
	// s=-
	// t=0 0
	// m=audio 50000 RTP/AVP 0
	// c=IN IP4 203.0.113.5
	// a=rtpmap:0 PCMU/8000
	// a=sendrecv
	// m=video 0 RTP/AVP 107
	// c=IN IP6 unspecified.invalid
	// IPv6-only agent, 488: true
}

// Reading a remote description: the applicable c= line per m-line, with
// session-level inheritance, names, and RFC 6157 "unspecified" forms.
func ExampleParse() {
	s, err := sdpcand.Parse([]byte("v=0\r\n" +
		"o=- 1 1 IN IP6 2001:db8::20\r\n" +
		"s=-\r\n" +
		"c=IN IP6 2001:db8::1\r\n" +
		"t=0 0\r\n" +
		"m=audio 6000 RTP/AVP 0\r\n" +
		"a=ice-ufrag:Ab3d\r\n" +
		"a=ice-pwd:0123456789abcdefghijkl\r\n" +
		"a=candidate:1 1 UDP 2130706431 2001:db8::1 6000 typ host\r\n" +
		"a=candidate:2 1 UDP 16777215 198.51.100.7 50000 typ relay raddr 2001:db8::1 rport 6000\r\n" +
		"m=audio 6002 RTP/AVP 0\r\n" +
		"c=IN IP6 hold.invalid\r\n" +
		"m=audio 6004 RTP/AVP 0\r\n" +
		"c=IN IP4 224.2.1.1/127/3\r\n" +
		"m=video 6006 RTP/AVP 96\r\n" +
		"c=IN IP4 media.example.com"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("ICE:", s.ICE())
	for _, m := range s.Media {
		fmt.Printf("%d %s %s %s port %d inherited=%v unspecified=%v ttl=%d count=%d candidates=%d\n",
			m.Index, m.Kind, m.Family, m.Address, m.Port, m.Inherited, m.Unspecified, m.TTL, m.AddrCount, len(m.Candidates))
	}
	// Output:
	// ICE: true
	// 0 audio IPv6 2001:db8::1 port 6000 inherited=true unspecified=false ttl=0 count=0 candidates=2
	// 1 audio IPv6 hold.invalid port 6002 inherited=false unspecified=true ttl=0 count=0 candidates=0
	// 2 audio IPv4 224.2.1.1 port 6004 inherited=false unspecified=false ttl=127 count=3 candidates=0
	// 3 video IPv4 media.example.com port 6006 inherited=false unspecified=false ttl=0 count=0 candidates=0
}
