package sdpcand

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// wantMedia is what a test expects of one m-line.
type wantMedia struct {
	kind        string
	family      netaddr.Family
	address     string
	port        int
	inherited   bool
	unspecified bool
	ttl, count  int
	cands       int
	badCands    int
}

func checkMedia(t *testing.T, got []Media, want []wantMedia) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d m-lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Index != i || g.Kind != w.kind || g.Family != w.family || g.Address != w.address || g.Port != w.port ||
			g.Inherited != w.inherited || g.Unspecified != w.unspecified || g.TTL != w.ttl || g.AddrCount != w.count ||
			len(g.Candidates) != w.cands || len(g.CandidateErrors) != w.badCands {
			t.Errorf("m-line %d: got index=%d kind=%s family=%v address=%q port=%d inherited=%v unspecified=%v ttl=%d count=%d cands=%d bad=%d (%v),\nwant %+v",
				i, g.Index, g.Kind, g.Family, g.Address, g.Port, g.Inherited, g.Unspecified, g.TTL, g.AddrCount,
				len(g.Candidates), len(g.CandidateErrors), g.CandidateErrors, w)
		}
		wantNet := map[netaddr.Family]string{netaddr.IPv4: "IP4", netaddr.IPv6: "IP6"}[w.family]
		if g.NetType != wantNet {
			t.Errorf("m-line %d: NetType %q, want %q", i, g.NetType, wantNet)
		}
		if a, err := netip.ParseAddr(w.address); err == nil && g.Addr != a {
			t.Errorf("m-line %d: Addr %v, want %v", i, g.Addr, a)
		} else if err != nil && g.Addr.IsValid() {
			t.Errorf("m-line %d: Addr %v for name %q, want zero", i, g.Addr, w.address)
		}
	}
}

var head = []string{"v=0", "o=- 1 1 IN IP4 192.0.2.9", "s=-"}

func desc(lines ...string) []byte {
	return sdpLines(append(append([]string{}, head...), lines...)...)
}

func TestParseRules(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		want    []wantMedia
		wantErr error
	}{
		{
			name: "RFC8866 5.7: media c= line",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv4, address: "192.0.2.1", port: 4000}},
		},
		{
			name: "RFC8866 5.7: session c= inherited by every media without one",
			in:   desc("c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0", "m=video 4002 RTP/AVP 96", "c=IN IP4 192.0.2.2"),
			want: []wantMedia{
				{kind: "audio", family: netaddr.IPv6, address: "2001:db8::1", port: 4000, inherited: true},
				{kind: "video", family: netaddr.IPv4, address: "192.0.2.2", port: 4002},
			},
		},
		{
			name: "RFC6157 4.1: mixed families across m-lines",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "m=audio 4002 RTP/AVP 0", "c=IN IP6 2001:db8::2"),
			want: []wantMedia{
				{kind: "audio", family: netaddr.IPv4, address: "192.0.2.1", port: 4000},
				{kind: "audio", family: netaddr.IPv6, address: "2001:db8::2", port: 4002},
			},
		},
		{
			name: "RFC6157 4.1 rule 1: .invalid name reads as unspecified",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 hold.invalid"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv6, address: "hold.invalid", port: 4000, unspecified: true}},
		},
		{
			name: "RFC6157 4.1 rule 1: :: still reads as unspecified",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 ::"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv6, address: "::", port: 4000, unspecified: true}},
		},
		{
			name: "RFC3264 8.4: 0.0.0.0 reads as unspecified",
			in:   desc("c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv4, address: "0.0.0.0", port: 4000, inherited: true, unspecified: true}},
		},
		{
			name: "RFC8866 5.7: FQDN kept as a name of the c= line's family",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 media.example.com"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv6, address: "media.example.com", port: 4000}},
		},
		{
			name: "RFC8866 5.7: IPv4 multicast TTL and number of addresses",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 224.2.1.1/127/3"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv4, address: "224.2.1.1", port: 4000, ttl: 127, count: 3}},
		},
		{
			name: "RFC8866 5.7: IPv4 multicast TTL only",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 233.252.0.1/64"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv4, address: "233.252.0.1", port: 4000, ttl: 64}},
		},
		{
			name: "RFC8866 5.7: IPv6 multicast number of addresses, no TTL",
			in:   desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 ff15::1/3"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv6, address: "ff15::1", port: 4000, count: 3}},
		},
		{
			name: "RFC3264 6: rejected stream without c= is tolerated",
			in:   desc("t=0 0", "m=video 0 RTP/AVP 96", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1"),
			want: []wantMedia{
				{kind: "video", port: 0},
				{kind: "audio", family: netaddr.IPv4, address: "192.0.2.1", port: 4000},
			},
		},
		{
			name: "RFC8839 5.1: candidates of both families, zone-less IPv6, mDNS and .invalid names",
			in: desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "a=ice-ufrag:Ab3d", "a=ice-pwd:"+testPwd,
				"a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host",
				"a=candidate:2 1 UDP 2130706175 2001:db8::1 4002 typ host",
				"a=candidate:3 1 UDP 1694498815 2001:db8::5 4004 typ srflx raddr 2001:db8::1 rport 4002",
				"a=candidate:4 1 UDP 16777215 203.0.113.7 50000 typ relay raddr 2001:db8::5 rport 4004",
				"a=candidate:5 1 UDP 2130706000 1f9d8c3a-9a55-4d2b.local 4006 typ host",
				"a=candidate:6 1 UDP 1694498000 peer.invalid 4008 typ srflx raddr 0.0.0.0 rport 9",
				"a=candidate:7 1 UDP garbage",
				"a=end-of-candidates"),
			want: []wantMedia{{kind: "audio", family: netaddr.IPv4, address: "192.0.2.1", port: 4000, cands: 5, badCands: 2}},
		},
		{
			name:    "RFC8866 5.7: IP4 c= with an IPv6 address is rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 2001:db8::1"),
			wantErr: ErrAddressMismatch,
		},
		{
			name:    "RFC8866 5.7: IP6 c= with an IPv4 address is rejected",
			in:      desc("c=IN IP6 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			wantErr: ErrAddressMismatch,
		},
		{
			name:    "RFC8866 5.7: two c= lines in one media section are rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1", "c=IN IP6 2001:db8::1"),
			wantErr: ErrMultipleConnection,
		},
		{
			name:    "RFC8866 5.7: two c= lines separated by a lone CR are rejected",
			in:      []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\rc=IN IP4 192.0.2.1\rc=IN IP6 2001:db8::1\r\n"),
			wantErr: ErrMultipleConnection,
		},
		{
			name:    "RFC8866 5.7: two session-level c= lines are rejected",
			in:      desc("c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.2", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			wantErr: ErrMultipleConnection,
		},
		{
			name:    "RFC8866 5.7: media without any applicable c= is rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0"),
			wantErr: ErrNoConnection,
		},
		{
			name:    "RFC8866 5.7: TTL on a unicast address is rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1/127"),
			wantErr: ErrInvalidSDP,
		},
		{
			name:    "RFC8866 5.7: TTL on IPv6 multicast is rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 ff15::1/127/3"),
			wantErr: ErrInvalidSDP,
		},
		{
			name:    "RFC8866 5.7: address that is neither IP nor name is rejected",
			in:      desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 [2001:db8::1]"),
			wantErr: ErrInvalidSDP,
		},
		{
			name:    "RFC8866 5: empty body is rejected",
			in:      []byte{},
			wantErr: ErrInvalidSDP,
		},
		{
			name:    "RFC8866 5: missing s= is rejected",
			in:      sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.9", "t=0 0"),
			wantErr: ErrInvalidSDP,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrInvalidSDP) {
					t.Fatalf("Parse: err = %v, want %v (and ErrInvalidSDP)", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkMedia(t, s.Media, tc.want)
		})
	}
}

func TestParseToleratesWhatPionDoesNot(t *testing.T) {
	// The same description three ways: CRLF, LF only without a final line
	// end, and with a trailing space after the rtpmap.
	lines := []string{"v=0", "o=- 1 1 IN IP4 192.0.2.9", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 96", "c=IN IP4 192.0.2.1", "a=rtpmap:96 opus/48000/2"}
	cases := map[string]string{
		"CRLF":                        strings.Join(lines, "\r\n") + "\r\n",
		"LF only (RFC 5118 archive)":  strings.Join(lines, "\n") + "\n",
		"no final line end":           strings.Join(lines, "\r\n"),
		"trailing space after rtpmap": strings.Join(lines, "\r\n") + " \r\n",
		"LF and trailing tab":         strings.Join(lines, "\n") + "\t",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(s.Media) != 1 || len(s.Media[0].Codecs) != 1 {
				t.Fatalf("got %d m-lines, codecs %+v; want 1 m-line with opus", len(s.Media), s.Media)
			}
			c := s.Media[0].Codecs[0]
			if c.PayloadType != 96 || c.Name != "opus" || c.ClockRate != 48000 || c.Channels != 2 {
				t.Errorf("codec %+v, want 96 opus/48000/2", c)
			}
		})
	}
}

func TestParseCodecsPerMedia(t *testing.T) {
	// pion/sdp's codec map is session-wide; the same payload type must
	// resolve per m-line.
	s, err := Parse(desc("c=IN IP4 192.0.2.1", "t=0 0",
		"m=audio 4000 RTP/AVP 96", "a=rtpmap:96 opus/48000/2",
		"m=video 4002 RTP/AVP 96", "a=rtpmap:96 VP8/90000"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Media[0].Codecs[0].Name; got != "opus" {
		t.Errorf("audio PT 96 = %s, want opus", got)
	}
	if got := s.Media[1].Codecs[0].Name; got != "VP8" {
		t.Errorf("video PT 96 = %s, want VP8", got)
	}
}

func TestParseICEAttributes(t *testing.T) {
	s, err := Parse(desc("c=IN IP4 192.0.2.1", "t=0 0", "a=ice-ufrag:SeSs", "a=ice-pwd:sessionpasswordsessionpw", "a=recvonly",
		"m=audio 4000 RTP/AVP 0", "a=rtcp-mux",
		"m=audio 4002 RTP/AVP 0", "a=ice-ufrag:MeDi", "a=ice-pwd:mediapasswordmediapassw", "a=inactive", "a=end-of-candidates"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.ICE() {
		t.Error("ICE() = false with session-level credentials")
	}
	a, b := s.Media[0], s.Media[1]
	if a.Ufrag != "SeSs" || a.Pwd != "sessionpasswordsessionpw" || !a.RTCPMux || a.Direction != "recvonly" || a.EndOfCandidates {
		t.Errorf("m-line 0 inherits session ICE/direction: got %+v", a)
	}
	if b.Ufrag != "MeDi" || b.Pwd != "mediapasswordmediapassw" || b.RTCPMux || b.Direction != "inactive" || !b.EndOfCandidates {
		t.Errorf("m-line 1 keeps its own ICE/direction: got %+v", b)
	}

	legacy, err := Parse(desc("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0"))
	if err != nil {
		t.Fatal(err)
	}
	if legacy.ICE() {
		t.Error("ICE() = true for a description without ICE attributes")
	}
	if legacy.Media[0].Direction != "sendrecv" {
		t.Errorf("default direction %q, want sendrecv", legacy.Media[0].Direction)
	}
}

func TestParseCandidateFamilies(t *testing.T) {
	s, err := Parse(desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.1",
		"a=candidate:1 1 udp 2130706431 192.0.2.1 4000 typ host",
		"a=candidate:2 1 udp 2130706175 2001:db8::1 4002 typ host",
		"a=candidate:3 1 udp 2130706000 fe80::1%eth0 4004 typ host",
		"a=candidate:4 1 udp 2130706000 host-1.local 4006 typ host",
		"a=candidate:5 1 udp 16777215 relay.invalid 4008 typ relay raddr 0.0.0.0 rport 9"))
	if err != nil {
		t.Fatal(err)
	}
	m := s.Media[0]
	want := []netaddr.Family{netaddr.IPv4, netaddr.IPv6, netaddr.IPv6, 0}
	if len(m.Candidates) != len(want) {
		t.Fatalf("%d candidates parsed, want %d (errors %v)", len(m.Candidates), len(want), m.CandidateErrors)
	}
	for i, f := range want {
		if got := CandidateFamily(m.Candidates[i]); got != f {
			t.Errorf("candidate %d (%s): family %v, want %v", i, m.Candidates[i].Address(), got, f)
		}
	}
	if ap, ok := CandidateAddr(m.Candidates[2]); !ok || ap != netip.MustParseAddrPort("[fe80::1]:4004") {
		t.Errorf("zone not dropped: %v %v", ap, ok)
	}
	if len(m.RawCandidates) != 5 || len(m.CandidateErrors) != 1 || !strings.Contains(m.CandidateErrors[0].Error(), "relay.invalid") {
		t.Errorf("raw %d, errors %v: want 5 raw and the .invalid relay reported", len(m.RawCandidates), m.CandidateErrors)
	}
	if len(s.Warnings) == 0 {
		t.Error("the unparsed candidate is not in Warnings")
	}
}

// TestParseTortureBodies checks the SDP bodies of the RFC 5118 torture
// messages, byte-exact with their LF line ends.
func TestParseTortureBodies(t *testing.T) {
	cases := []struct {
		name string
		want []wantMedia
	}{
		{
			// Session-level "c=IN IP6 2001:db8::1" applies to both m-lines.
			name: "inv-good",
			want: []wantMedia{
				{kind: "audio", family: netaddr.IPv6, address: "2001:db8::1", port: 6000, inherited: true},
				{kind: "video", family: netaddr.IPv6, address: "2001:db8::1", port: 6024, inherited: true},
			},
		},
		{
			// RFC 5118 §4.5: one m-line per family, each with its own c=;
			// the last rtpmap line ends in a space.
			name: "inv-mult-sdp",
			want: []wantMedia{
				{kind: "audio", family: netaddr.IPv4, address: "192.0.2.1", port: 22334},
				{kind: "video", family: netaddr.IPv6, address: "2001:db8::1", port: 6024},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tortureBody(t, tc.name))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkMedia(t, s.Media, tc.want)
			if s.ICE() {
				t.Error("ICE() = true, the body has no ICE attributes")
			}
		})
	}

	// The rtpmap with the trailing space still resolves.
	s, err := Parse(tortureBody(t, "inv-mult-sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Media[1].Codecs; len(c) != 1 || c[0].Name != "H263-1998" || c[0].ClockRate != 90000 {
		t.Errorf("inv-mult-sdp video codecs %+v, want 107 H263-1998/90000", c)
	}
	if c := s.Media[0].Codecs; len(c) != 1 || c[0].Name != "PCMU" {
		t.Errorf("inv-mult-sdp audio codecs %+v, want static PCMU", c)
	}
}
