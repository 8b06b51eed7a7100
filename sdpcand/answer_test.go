package sdpcand

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/netaddr"
)

var (
	v4Addr = netip.MustParseAddrPort("203.0.113.5:50000")
	v6Addr = netip.MustParseAddrPort("[2001:db8::10]:40000")
	both   = map[netaddr.Family]netip.AddrPort{netaddr.IPv4: v4Addr, netaddr.IPv6: v6Addr}
	only4  = map[netaddr.Family]netip.AddrPort{netaddr.IPv4: v4Addr}
	only6  = map[netaddr.Family]netip.AddrPort{netaddr.IPv6: v6Addr}
)

// answerMedia is what a test expects of one answer m-line.
type answerMedia struct {
	kind    string
	family  netaddr.Family
	address string
	port    int
	dir     string // "" = don't care
}

func TestBuildAnswerRules(t *testing.T) {
	cases := []struct {
		name    string
		offer   []byte
		addrs   map[netaddr.Family]netip.AddrPort
		dir     string
		want    []answerMedia
		wantErr error
	}{
		{
			name:  "RFC6157 4.1 rule 2: answer keeps offer's IP4",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv4, "203.0.113.5", 50000, "sendrecv"}},
		},
		{
			name:  "RFC6157 4.1 rule 2: answer keeps offer's IP6",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 2001:db8::1"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv6, "2001:db8::10", 40000, "sendrecv"}},
		},
		{
			name:  "RFC6157 4.1 rule 2: session-level c= inherited by the media decides",
			offer: desc("c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv6, "2001:db8::10", 40000, ""}},
		},
		{
			name:  "RFC6157 4.1 rule 2: media-level c= overrides the session's",
			offer: desc("c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv4, "203.0.113.5", 50000, ""}},
		},
		{
			name:    "RFC6157 4.1 rule 2: IPv6-only answerer refuses an IP4 offer",
			offer:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			addrs:   only6,
			wantErr: ErrNoAddressOfFamily,
		},
		{
			name:    "RFC6157 4.1 rule 2: IPv4-only answerer refuses an IP6 offer",
			offer:   desc("c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			addrs:   only4,
			wantErr: ErrNoAddressOfFamily,
		},
		{
			name:  "RFC6157 4.1 rule 2: IPv4 relayed address answers an IP4 offer on an IPv6-only agent",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			addrs: only4,
			want:  []answerMedia{{"audio", netaddr.IPv4, "203.0.113.5", 50000, ""}},
		},
		{
			name: "RFC3264 6: answer keeps m-line count and order, rejects with port 0 in the offer's family",
			offer: desc("t=0 0",
				"m=video 5000 RTP/AVP 96", "c=IN IP6 2001:db8::1", "a=rtpmap:96 VP8/90000",
				"m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1",
				"m=audio 0 RTP/AVP 8", "c=IN IP6 2001:db8::1"),
			addrs: both,
			want: []answerMedia{
				{"video", netaddr.IPv6, InvalidHost, 0, ""},
				{"audio", netaddr.IPv4, "203.0.113.5", 50000, "sendrecv"},
				{"audio", netaddr.IPv6, InvalidHost, 0, ""},
			},
		},
		{
			name: "RFC6157 4.1 rule 2: a second audio m-line of a family the agent has is taken",
			offer: desc("t=0 0",
				"m=audio 4000 RTP/AVP 0", "c=IN IP6 2001:db8::1",
				"m=audio 4002 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			addrs: only4,
			want: []answerMedia{
				{"audio", netaddr.IPv6, InvalidHost, 0, ""},
				{"audio", netaddr.IPv4, "203.0.113.5", 50000, ""},
			},
		},
		{
			name:  "RFC3264 6.1: sendonly offer gets recvonly",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "a=sendonly"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv4, "203.0.113.5", 50000, "recvonly"}},
		},
		{
			name:  "RFC6157 4.1 rule 1: hold offer with a .invalid name is answered in IP6",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 hold.invalid", "a=sendonly"),
			addrs: both,
			dir:   "sendrecv",
			want:  []answerMedia{{"audio", netaddr.IPv6, "2001:db8::10", 40000, "recvonly"}},
		},
		{
			name:  "RFC3264 6.1: inactive offer stays inactive",
			offer: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "a=inactive"),
			addrs: both,
			want:  []answerMedia{{"audio", netaddr.IPv4, "203.0.113.5", 50000, "inactive"}},
		},
		{
			name:    "RFC3264 6: no codec in common",
			offer:   desc("t=0 0", "m=audio 4000 RTP/AVP 2", "c=IN IP4 192.0.2.1", "a=rtpmap:2 G726-32/8000"),
			addrs:   both,
			wantErr: ErrNoAcceptableMedia,
		},
		{
			name:    "RFC4733: telephone-event alone is not a codec in common",
			offer:   desc("t=0 0", "m=audio 4000 RTP/AVP 101", "c=IN IP4 192.0.2.1", "a=rtpmap:101 telephone-event/8000"),
			addrs:   both,
			wantErr: ErrNoAcceptableMedia,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			offer, err := Parse(tc.offer)
			if err != nil {
				t.Fatalf("Parse(offer): %v", err)
			}
			out, err := BuildAnswer(offer, AnswerParams{Addrs: tc.addrs, Direction: tc.dir, SessionID: 9})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("BuildAnswer: err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildAnswer: %v", err)
			}
			ans, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(answer): %v\n%s", err, out)
			}
			if len(ans.Media) != len(tc.want) {
				t.Fatalf("answer has %d m-lines, want %d:\n%s", len(ans.Media), len(tc.want), out)
			}
			for i, w := range tc.want {
				g := ans.Media[i]
				if g.Kind != w.kind || g.Family != w.family || g.Address != w.address || g.Port != w.port || (w.dir != "" && g.Direction != w.dir) {
					t.Errorf("answer m-line %d: %s %v %s port %d %s, want %+v\n%s", i, g.Kind, g.Family, g.Address, g.Port, g.Direction, w, out)
				}
				if g.Family != offer.Media[i].Family {
					t.Errorf("answer m-line %d: family %v differs from the offer's %v", i, g.Family, offer.Media[i].Family)
				}
				if g.Inherited {
					t.Errorf("answer m-line %d: no media-level c= line", i)
				}
			}
			if strings.Contains(string(out), "IN IP6 ::\r\n") {
				t.Errorf("RFC6157 4.1 rule 1: answer contains IN IP6 ::\n%s", out)
			}
		})
	}
}

func TestBuildAnswerCodecsAndICE(t *testing.T) {
	offer, err := Parse(desc("t=0 0", "m=audio 4000 RTP/AVP 96 8 0 97", "c=IN IP4 192.0.2.1",
		"a=rtpmap:96 opus/48000/2", "a=rtpmap:97 TELEPHONE-EVENT/8000", "a=rtcp-mux",
		"a=ice-ufrag:OfFr", "a=ice-pwd:offerpasswordofferpassw",
		"a=candidate:1 1 udp 2130706431 192.0.2.1 4000 typ host", "a=end-of-candidates"))
	if err != nil {
		t.Fatal(err)
	}
	cands := ipv6OnlyAgent(t)
	out, err := BuildAnswer(offer, AnswerParams{Ufrag: testUfrag, Pwd: testPwd, Candidates: cands, Addrs: DefaultAddrs(cands), SessionID: 3})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	m := ans.Media[0]
	// RFC 3264 6.1: offer's order, offer's payload types; 101 in ours is 97 in theirs.
	if got := strings.Join(m.Formats, " "); got != "8 0 97" {
		t.Errorf("formats %q, want \"8 0 97\"\n%s", got, out)
	}
	if !m.RTCPMux || m.Ufrag != testUfrag || m.Pwd != testPwd || !m.EndOfCandidates || len(m.Candidates) != len(cands) {
		t.Errorf("RFC8839: answer ICE attributes missing:\n%s", out)
	}
	if m.Address != "203.0.113.5" || m.Port != 50000 {
		t.Errorf("c=/m= %s %d, want the IPv4 relayed address", m.Address, m.Port)
	}

	// A legacy answerer (no credentials) to an ICE offer writes no ICE.
	out, err = BuildAnswer(offer, AnswerParams{Addrs: both})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "a=ice-") || strings.Contains(string(out), "a=candidate") {
		t.Errorf("answer without credentials carries ICE:\n%s", out)
	}
	// An ICE answerer to a legacy offer writes no ICE either.
	legacy, _ := Parse(desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"))
	out, err = BuildAnswer(legacy, AnswerParams{Ufrag: testUfrag, Pwd: testPwd, Candidates: cands, Addrs: both})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "a=ice-") || strings.Contains(string(out), "a=rtcp-mux") {
		t.Errorf("answer to a legacy offer carries ICE or rtcp-mux:\n%s", out)
	}
}

func TestBuildAnswerTortureBodies(t *testing.T) {
	// inv-mult-sdp: audio IP4 + video IP6. An IPv6-only agent with no IPv4
	// relay must refuse (488), one with an IPv4 relay answers audio in IP4
	// and rejects video in IP6.
	offer, err := Parse(tortureBody(t, "inv-mult-sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildAnswer(offer, AnswerParams{Addrs: only6}); !errors.Is(err, ErrNoAddressOfFamily) {
		t.Errorf("IPv6-only answer: %v, want ErrNoAddressOfFamily", err)
	}
	out, err := BuildAnswer(offer, AnswerParams{Addrs: only4})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Media) != 2 || ans.Media[0].NetType != "IP4" || ans.Media[0].Port != 50000 ||
		ans.Media[1].NetType != "IP6" || ans.Media[1].Port != 0 || !ans.Media[1].Unspecified {
		t.Errorf("answer to inv-mult-sdp:\n%s", out)
	}

	// inv-good offers G726-32 only: nothing in common with PCMU/PCMA.
	offer, err = Parse(tortureBody(t, "inv-good"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildAnswer(offer, AnswerParams{Addrs: both}); !errors.Is(err, ErrNoAcceptableMedia) {
		t.Errorf("inv-good answer: %v, want ErrNoAcceptableMedia", err)
	}
	out, err = BuildAnswer(offer, AnswerParams{Addrs: both, Codecs: []Codec{{PayloadType: 2, Name: "G726-32", ClockRate: 8000}}})
	if err != nil {
		t.Fatal(err)
	}
	if ans, err = Parse(out); err != nil || ans.Media[0].Family != netaddr.IPv6 || ans.Media[0].Port != 40000 || ans.Media[1].Port != 0 {
		t.Errorf("answer to inv-good (%v):\n%s", err, out)
	}
}

func TestBuildAnswerBadInput(t *testing.T) {
	if _, err := BuildAnswer(nil, AnswerParams{Addrs: both}); err == nil {
		t.Error("nil offer accepted")
	}
	if _, err := BuildAnswer(&Session{}, AnswerParams{Addrs: both}); err == nil {
		t.Error("offer without m-lines accepted")
	}
	offer, _ := Parse(desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "a=ice-ufrag:OfFr", "a=ice-pwd:offerpasswordofferpassw"))
	if _, err := BuildAnswer(offer, AnswerParams{Addrs: both, Ufrag: "x", Pwd: testPwd}); err == nil {
		t.Error("RFC8839 5.4: short ufrag accepted")
	}
	for name, addrs := range map[string]map[netaddr.Family]netip.AddrPort{
		"port 0 would reject the stream": {netaddr.IPv4: netip.MustParseAddrPort("192.0.2.1:0")},
		"IPv6 address under IPv4":        {netaddr.IPv4: v6Addr},
	} {
		if out, err := BuildAnswer(offer, AnswerParams{Addrs: addrs}); err == nil || errors.Is(err, ErrNoAddressOfFamily) {
			t.Errorf("%s: err %v, want a clear Addrs error\n%s", name, err, out)
		}
	}
	// An IPv4-mapped address under IPv4 is written as plain IPv4.
	out, err := BuildAnswer(offer, AnswerParams{Addrs: map[netaddr.Family]netip.AddrPort{netaddr.IPv4: netip.MustParseAddrPort("[::ffff:192.0.2.7]:4000")}})
	if err != nil || !strings.Contains(string(out), "c=IN IP4 192.0.2.7\r\n") {
		t.Errorf("mapped address: %v\n%s", err, out)
	}
}

func TestAcceptedMedia(t *testing.T) {
	offer, err := Parse(desc("t=0 0",
		"m=video 5000 RTP/AVP 96", "c=IN IP4 192.0.2.1",
		"m=audio 4000 RTP/AVP 0", "c=IN IP6 2001:db8::1",
		"m=audio 4002 RTP/AVP 0", "c=IN IP4 192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addrs map[netaddr.Family]netip.AddrPort
		want  int
	}{{both, 1}, {only6, 1}, {only4, 2}} {
		got, err := AcceptedMedia(offer, AnswerParams{Addrs: tc.addrs})
		if err != nil || got != tc.want {
			t.Errorf("AcceptedMedia(%v) = %d, %v; want %d", tc.addrs, got, err, tc.want)
		}
		out, err := BuildAnswer(offer, AnswerParams{Addrs: tc.addrs})
		if err != nil {
			t.Fatal(err)
		}
		ans, _ := Parse(out)
		for i, m := range ans.Media {
			if (m.Port != 0) != (i == tc.want) {
				t.Errorf("answer m-line %d port %d, accepted index %d\n%s", i, m.Port, tc.want, out)
			}
		}
	}
	if _, err := AcceptedMedia(offer, AnswerParams{}); !errors.Is(err, ErrNoAddressOfFamily) {
		t.Errorf("no addresses: %v", err)
	}
}

// An offer without a=rtcp-mux gets a=rtcp (RFC 3605) at the RTCP port we
// hold; one with rtcp-mux gets rtcp-mux and no a=rtcp.
func TestBuildAnswerRTCP(t *testing.T) {
	rtcp := map[netaddr.Family]netip.AddrPort{
		netaddr.IPv4: netip.MustParseAddrPort("203.0.113.5:50007"),
		netaddr.IPv6: netip.MustParseAddrPort("[2001:db8::10]:40007"),
	}
	for _, tc := range []struct {
		name, cline string
		mux         bool
		want        string
	}{
		{"v4", "c=IN IP4 192.0.2.1", false, "a=rtcp:50007 IN IP4 203.0.113.5\r\n"},
		{"v6", "c=IN IP6 2001:db8::1", false, "a=rtcp:40007 IN IP6 2001:db8::10\r\n"},
		{"mux", "c=IN IP4 192.0.2.1", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{"t=0 0", "m=audio 4000 RTP/AVP 0", tc.cline}
			if tc.mux {
				lines = append(lines, "a=rtcp-mux")
			}
			offer, err := Parse(desc(lines...))
			if err != nil {
				t.Fatal(err)
			}
			out, err := BuildAnswer(offer, AnswerParams{Addrs: both, RTCP: rtcp})
			if err != nil {
				t.Fatal(err)
			}
			s := string(out)
			if tc.want != "" && !strings.Contains(s, tc.want) {
				t.Errorf("answer lacks %q:\n%s", tc.want, s)
			}
			if tc.mux && (strings.Contains(s, "a=rtcp:") || !strings.Contains(s, "a=rtcp-mux")) {
				t.Errorf("rtcp-mux offer: want rtcp-mux and no a=rtcp:\n%s", s)
			}
			if !tc.mux && strings.Contains(s, "a=rtcp-mux") {
				t.Errorf("answer offers rtcp-mux the offer did not have:\n%s", s)
			}
		})
	}
}
