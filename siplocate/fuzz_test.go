package siplocate

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzParseURI: any input gives a URI or an error; a URI survives a round
// trip through String.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"sip:alice@example.test", "sips:example.test;transport=tcp", "sip:[2001:db8::1]:5060;maddr=[::1]",
		"sip:a;b?c@h.test;transport=TLS?x=y", "turn:example.test?transport=udp", "turns:[::ffff:192.0.2.1]:5349",
		"stun:192.0.2.1.", "sip:[::1", "sip:@", "sip:a@b@c", "sip:%00", "turn:x?transport=udp&transport=tcp",
		"sip:x;maddr=", "sip:x;transport=", "SIP:X.TEST:65535", "sip:[fe80::1%25eth0]", "sips:h;transport=udp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if u.Host == "" || u.Scheme == 0 {
			t.Fatalf("ParseURI(%q) = %+v without error", s, u)
		}
		if u.Addr.IsValid() && u.Addr.String() != u.Host {
			t.Fatalf("ParseURI(%q): Addr %v but Host %q", s, u.Addr, u.Host)
		}
		again, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("ParseURI(%q).String() = %q does not parse: %v", s, u.String(), err)
		}
		if again != u {
			t.Fatalf("round trip of %q: %+v became %q then %+v", s, u, u.String(), again)
		}
	})
}

// FuzzAnswer feeds arbitrary DNS messages to the code that reads answers:
// the CNAME chase, SRV ordering and NAPTR filtering must neither panic nor
// hand on records the question did not ask for.
func FuzzAnswer(f *testing.F) {
	seed := func(rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion("q.example.test.", dns.TypeSRV)
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed("q.example.test. 60 IN SRV 0 0 0 .")
	seed("q.example.test. 60 IN SRV 10 60 5060 a.example.test.", "q.example.test. 60 IN SRV 10 0 5060 b.example.test.", "q.example.test. 60 IN SRV 0 65535 1 .")
	seed("q.example.test. 60 IN CNAME q.example.test.")
	seed("q.example.test. 60 IN CNAME a.example.test.", "a.example.test. 60 IN SRV 1 1 1 x.")
	seed(`q.example.test. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.q.`, `q.example.test. 60 IN NAPTR 0 0 "S" "RELAY:turn.udp:turn.tcp" "" .`)
	seed("Q.EXAMPLE.TEST. 60 IN A 192.0.2.1", "q.example.test. 60 IN AAAA ::ffff:192.0.2.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return
		}
		for _, qt := range []uint16{dns.TypeSRV, dns.TypeNAPTR, dns.TypeA, dns.TypeAAAA} {
			rrs, end, err := chase(m, "q.example.test.", qt, map[string]bool{"q.example.test.": true})
			if err != nil {
				continue
			}
			for _, rr := range rrs {
				if h := rr.Header(); h.Rrtype != qt || !strings.EqualFold(h.Name, end) {
					t.Fatalf("chase kept %v for %s at %s", rr, dns.TypeToString[qt], end)
				}
			}
			set := toSRVSet(rrs, func(n uint32) uint32 { return n - 1 })
			for i, s := range set.records {
				if s.Target == "." || (i > 0 && s.Priority < set.records[i-1].Priority) {
					t.Fatalf("bad SRV order %v", set.records)
				}
			}
			for _, scheme := range []Scheme{SchemeSIP, SchemeSIPS, SchemeTURN} {
				for _, n := range usableNAPTRs(rrs, services[scheme], discardLogger) {
					if n.rec.Replacement == "." || n.rec.Regexp != "" {
						t.Fatalf("unusable NAPTR kept: %v", n.rec)
					}
				}
			}
		}
	})
}
