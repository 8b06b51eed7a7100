package sdpcand

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// ipv6OnlyAgent is what gather hands an IPv6-only softphone: IPv6 host and
// server-reflexive candidates, and an IPv4 relayed one from a dual-stack
// TURN server reached over IPv6.
func ipv6OnlyAgent(t *testing.T) []ice.Candidate {
	return []ice.Candidate{
		mustHost(t, "2001:db8::10", 40000, 2130706431),
		mustSrflx(t, "2001:db8:ffff::10", 40000, "2001:db8::10", 40000, 1694498815),
		mustRelay(t, "203.0.113.5", 50000, "2001:db8:ffff::10", 40000, 16777215),
		mustRelay(t, "2001:db8:cafe::5", 50002, "2001:db8:ffff::10", 40000, 16776959),
	}
}

func TestChooseDefault(t *testing.T) {
	host4 := mustHost(t, "192.0.2.10", 4000, 2130706431)
	host6 := mustHost(t, "2001:db8::10", 4002, 2130706431)
	host6b := mustHost(t, "2001:db8::11", 4004, 2130706000)
	ll6 := mustHost(t, "fe80::1", 4006, 2130706431)
	srflx4 := mustSrflx(t, "198.51.100.10", 4008, "192.0.2.10", 4000, 1694498815)
	relay4 := mustRelay(t, "203.0.113.5", 50000, "2001:db8::10", 4002, 16777215)
	relay6 := mustRelay(t, "2001:db8:cafe::5", 50002, "192.0.2.10", 4000, 16777215)
	mdns := mustHost(t, "e5f1.local", 4010, 2130706431)
	cases := []struct {
		name  string
		cands []ice.Candidate
		want  string // "" = none
	}{
		{"RFC6157 4: IPv6-only agent offers its IPv4 relayed address", []ice.Candidate{host6, relay6, relay4}, "203.0.113.5:50000"},
		{"RFC8445 5.1.4: relayed before reflexive and host", []ice.Candidate{host4, srflx4, relay4}, "203.0.113.5:50000"},
		{"RFC6157 4: IPv4 host/srflx before anything IPv6", []ice.Candidate{host6, relay6, srflx4, host4}, "198.51.100.10:4008"},
		{"IPv4 host before IPv6 relay", []ice.Candidate{relay6, host4}, "192.0.2.10:4000"},
		{"IPv6 relay before IPv6 host", []ice.Candidate{host6, relay6}, "[2001:db8:cafe::5]:50002"},
		{"higher priority wins among equals", []ice.Candidate{host6b, host6}, "[2001:db8::10]:4002"},
		{"link-local last", []ice.Candidate{ll6, host6b}, "[2001:db8::11]:4004"},
		{"mDNS name is never a default", []ice.Candidate{mdns}, ""},
		{"no candidates", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ChooseDefault(tc.cands)
			if tc.want == "" {
				if ok {
					t.Fatalf("got %v, want none", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddrPort(tc.want) {
				t.Fatalf("got %v %v, want %s", got, ok, tc.want)
			}
		})
	}

	addrs := DefaultAddrs(ipv6OnlyAgent(t))
	if addrs[netaddr.IPv4] != netip.MustParseAddrPort("203.0.113.5:50000") ||
		addrs[netaddr.IPv6] != netip.MustParseAddrPort("[2001:db8:cafe::5]:50002") || len(addrs) != 2 {
		t.Errorf("DefaultAddrs = %v", addrs)
	}
}

func TestBuildOfferRules(t *testing.T) {
	cands := ipv6OnlyAgent(t)
	cases := []struct {
		name     string
		p        OfferParams
		wantC    string // the m-line's c= line
		wantM    string // m= line prefix
		wantDir  string
		contains []string
		absent   []string
	}{
		{
			name:    "RFC6157 4.2: IPv6-only agent's default is its IPv4 relayed address",
			p:       OfferParams{Ufrag: testUfrag, Pwd: testPwd, Candidates: cands},
			wantC:   "c=IN IP4 203.0.113.5",
			wantM:   "m=audio 50000 RTP/AVP 0 8 101",
			wantDir: "sendrecv",
			contains: []string{
				"a=ice-ufrag:" + testUfrag, "a=ice-pwd:" + testPwd, "a=end-of-candidates", "a=rtcp-mux",
				"a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
				" 2001:db8::10 40000 typ host", " 203.0.113.5 50000 typ relay raddr 2001:db8:ffff::10 rport 40000",
				"o=- 7 7 IN IP4 203.0.113.5",
			},
		},
		{
			name:    "RFC6157 4.1 rule 1: IPv6 hold writes a .invalid name, never ::",
			p:       OfferParams{Default: netip.MustParseAddrPort("[2001:db8::10]:40000"), Hold: true},
			wantC:   "c=IN IP6 " + InvalidHost,
			wantM:   "m=audio 40000 RTP/AVP",
			wantDir: "sendonly",
			absent:  []string{"IN IP6 ::", "a=ice-ufrag", "a=candidate"},
		},
		{
			name:    "RFC3264 8.4: IPv4 hold writes 0.0.0.0",
			p:       OfferParams{Default: netip.MustParseAddrPort("192.0.2.10:4000"), Hold: true, Direction: "inactive"},
			wantC:   "c=IN IP4 0.0.0.0",
			wantM:   "m=audio 4000 RTP/AVP",
			wantDir: "inactive",
		},
		{
			name:    "RFC6157 4.1 rule 1: unspecified IPv6 default is written as the .invalid name",
			p:       OfferParams{Default: netip.MustParseAddrPort("[::]:4000")},
			wantC:   "c=IN IP6 " + InvalidHost,
			wantM:   "m=audio 4000 RTP/AVP",
			wantDir: "sendrecv",
		},
		{
			name:     "RFC8840 4.1.1.1: trickle offer without end-of-candidates",
			p:        OfferParams{Ufrag: testUfrag, Pwd: testPwd, Default: netip.MustParseAddrPort("192.0.2.10:4000"), NoEndOfCandidates: true, Codecs: []Codec{{PayloadType: 96, Name: "opus", ClockRate: 48000, Channels: 2}}},
			wantC:    "c=IN IP4 192.0.2.10",
			wantM:    "m=audio 4000 RTP/AVP 96",
			wantDir:  "sendrecv",
			contains: []string{"a=rtpmap:96 opus/48000/2"},
			absent:   []string{"a=end-of-candidates", "PCMU"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.SessionID = 7
			out, err := BuildOffer(tc.p)
			if err != nil {
				t.Fatalf("BuildOffer: %v", err)
			}
			text := string(out)
			if !strings.HasSuffix(text, "\r\n") || strings.Contains(strings.ReplaceAll(text, "\r\n", ""), "\n") {
				t.Errorf("offer is not CRLF-terminated lines:\n%s", text)
			}
			if !strings.Contains(text, "\r\n"+tc.wantC+"\r\n") || !strings.Contains(text, "\r\n"+tc.wantM) || !strings.Contains(text, "\r\na="+tc.wantDir+"\r\n") {
				t.Errorf("want %q, %q and a=%s in:\n%s", tc.wantC, tc.wantM, tc.wantDir, text)
			}
			for _, s := range tc.contains {
				if !strings.Contains(text, s) {
					t.Errorf("want %q in:\n%s", s, text)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(text, s) {
					t.Errorf("do not want %q in:\n%s", s, text)
				}
			}
			// Round trip: our own reader takes it and sees the same thing.
			s, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(own offer): %v", err)
			}
			if len(s.Media) != 1 || len(s.Media[0].Candidates) != len(tc.p.Candidates) || len(s.Media[0].CandidateErrors) != 0 {
				t.Errorf("round trip: %+v", s.Media)
			}
		})
	}
}

func TestBuildOfferCandidatesRoundTrip(t *testing.T) {
	cands := ipv6OnlyAgent(t)
	// A relayed candidate whose related address pion does not know: pion's
	// Marshal would drop raddr/rport, RFC 8839 requires them.
	bare, err := ice.NewCandidateRelay(&ice.CandidateRelayConfig{Network: "udp", Address: "2001:db8:cafe::9", Port: 50004, Component: 1, Priority: 100, Foundation: "r9"})
	if err != nil {
		t.Fatal(err)
	}
	cands = append(cands, bare)
	out, err := BuildOffer(OfferParams{Ufrag: testUfrag, Pwd: testPwd, Candidates: cands, SessionID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("2001:db8:cafe::9 50004 typ relay raddr :: rport 9")) {
		t.Errorf("RFC8839 5.1: relayed candidate without raddr/rport:\n%s", out)
	}
	s, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Media[0].Candidates
	if len(got) != len(cands) {
		t.Fatalf("%d candidates back, want %d", len(got), len(cands))
	}
	for i, c := range cands {
		ga, _ := CandidateAddr(got[i])
		wa, _ := CandidateAddr(c)
		if ga != wa || got[i].Type() != c.Type() || got[i].Priority() != c.Priority() || got[i].Foundation() != c.Foundation() {
			t.Errorf("candidate %d: got %s, want %s", i, got[i].Marshal(), c.Marshal())
		}
	}
}

func TestBuildOfferErrors(t *testing.T) {
	cases := []struct {
		name string
		p    OfferParams
	}{
		{"no default address and no candidate", OfferParams{}},
		{"RFC8839 5.4: ufrag too short", OfferParams{Ufrag: "abc", Pwd: testPwd, Default: netip.MustParseAddrPort("192.0.2.1:4000")}},
		{"RFC8839 5.4: pwd too short", OfferParams{Ufrag: testUfrag, Pwd: "short", Default: netip.MustParseAddrPort("192.0.2.1:4000")}},
		{"RFC8839 5.4: ufrag with a non ice-char", OfferParams{Ufrag: "ab d", Pwd: testPwd, Default: netip.MustParseAddrPort("192.0.2.1:4000")}},
		{"RFC3264 6.1: unknown direction", OfferParams{Direction: "sideways", Default: netip.MustParseAddrPort("192.0.2.1:4000")}},
		{"duplicate payload type", OfferParams{Default: netip.MustParseAddrPort("192.0.2.1:4000"), Codecs: []Codec{{0, "PCMU", 8000, 0, ""}, {0, "PCMA", 8000, 0, ""}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := BuildOffer(tc.p); err == nil {
				t.Fatalf("BuildOffer succeeded:\n%s", out)
			}
		})
	}
	if _, err := BuildOffer(OfferParams{}); !errors.Is(err, errNoDefault) {
		t.Errorf("empty params: %v, want errNoDefault", err)
	}
}
