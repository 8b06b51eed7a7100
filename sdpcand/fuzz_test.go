package sdpcand

import (
	"net/netip"
	"testing"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// FuzzParse feeds the reader arbitrary bodies, seeded with the RFC 5118
// torture bodies. It must never panic, and whatever it accepts BuildAnswer
// must handle without panicking, and an answer it writes must read back.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"inv-good", "inv-mult-sdp"} {
		f.Add(tortureBody(f, name))
	}
	f.Add(desc("c=IN IP4 224.2.1.1/127/3", "t=0 0", "m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 opus/48000/2",
		"m=video 0 RTP/AVP 96", "c=IN IP6 ff15::1/3"))
	f.Add(desc("t=0 0", "m=audio 4000 RTP/AVP 0", "c=IN IP6 hold.invalid", "a=ice-ufrag:Ab3d", "a=ice-pwd:"+testPwd,
		"a=candidate:1 1 UDP 2130706431 2001:db8::1 4000 typ host", "a=candidate:2 1 UDP 1 x.local 9 typ host",
		"a=candidate:3 1 UDP 1 203.0.113.1 9 typ relay raddr 0.0.0.0 rport 9", "a=end-of-candidates"))
	f.Add([]byte("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=\nc=IN IP4 2001:db8::1\nm=audio 1 RTP/AVP 0"))

	addrs := map[netaddr.Family]netip.AddrPort{
		netaddr.IPv4: netip.MustParseAddrPort("203.0.113.5:50000"),
		netaddr.IPv6: netip.MustParseAddrPort("[2001:db8::10]:40000"),
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		_ = s.ICE()
		for _, m := range s.Media {
			if m.Port != 0 && m.NetType == "" {
				t.Fatalf("m-line %d accepted without a c= line", m.Index)
			}
			if m.Addr.IsValid() && netaddr.FamilyOf(m.Addr) != m.Family {
				t.Fatalf("m-line %d: %v is not %v", m.Index, m.Addr, m.Family)
			}
		}
		out, err := BuildAnswer(s, AnswerParams{Ufrag: testUfrag, Pwd: testPwd, Addrs: addrs})
		if err != nil {
			return
		}
		ans, err := Parse(out)
		if err != nil {
			t.Fatalf("our answer does not read back: %v\n%s", err, out)
		}
		if len(ans.Media) != len(s.Media) {
			t.Fatalf("answer has %d m-lines, offer %d", len(ans.Media), len(s.Media))
		}
		for i := range ans.Media {
			if s.Media[i].Family != 0 && ans.Media[i].Family != s.Media[i].Family {
				t.Fatalf("RFC6157 4.1 rule 2: m-line %d answered in %v, offered in %v", i, ans.Media[i].Family, s.Media[i].Family)
			}
		}
	})
}
