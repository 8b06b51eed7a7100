package sipcheck

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/sipaddr"
)

const testdata = "../../sipaddr/testdata"

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTortureVerdicts asserts the verdict on every torture message: the
// draft's seven (byte-exact) and RFC 5118's twelve (written from §4).
func TestTortureVerdicts(t *testing.T) {
	tests := []struct {
		name, file string
		accept     bool
		reason     string // exact reject reason
		quirks     sipaddr.Quirk
		ruri       string // Request-URI hostport as written back
		via        string // top Via sent-by
		received   string
		contacts   []string
		media      []string // family/address/port per m-line
		notes      []string // substrings that must be among the notes
	}{
		{name: "RFC5118 draft 4.1: reg-good", file: "torture/reg-good", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"}},
		{name: "RFC5118 draft 4.2: reg-ambiguous is an address with no port", file: "torture/reg-ambiguous", accept: true, ruri: "[2001:db8::10:5070]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"},
			notes: []string{"Request-URI host [2001:db8::10:5070] has no port: 5070 is the last group of the address, not a port (RFC 5118 §4.3: a port goes after ']', as in [2001:db8::10]:5070)"}},
		{name: "RFC5118 draft 4.3: reg-good-port has port 5070", file: "torture/reg-good-port", accept: true, ruri: "[2001:db8::10]:5070", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"}},
		{name: "RFC3261 7.3.1: reg-param's indented Via continues From", file: "torture/reg-param",
			reason: `no Via header (RFC 3261 §8.1.1): line 4 " Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:2..." starts with white space, so RFC 3261 §7.3.1 makes it part of the From header`,
			notes:  []string{"line 4 starts with white space: it continues the From header (RFC 3261 §7.3.1)"}},
		{name: "RFC5118 draft 4.5: inv-good with an off Content-Length", file: "torture/inv-good", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"},
			media: []string{"IPv6 2001:db8::1 6000", "IPv6 2001:db8::1 6024"},
			notes: []string{"Content-Length says 268 but the body has 241 bytes", "header-section line(s) end in LF"}},
		{name: "RFC5118 draft 4.6: bye-good mixes IPv6 and IPv4 Vias", file: "torture/bye-good", accept: true, ruri: "host.example.com", via: "[2001:db8::9:1]:6050",
			notes: []string{"no empty line ends the header section", "no Content-Length header"}},
		{name: "RFC5118 draft 4.7: inv-mult-sdp", file: "torture/inv-mult-sdp", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"},
			media: []string{"IPv4 192.0.2.1 22334", "IPv6 2001:db8::1 6024"}},

		{name: "RFC5118 4.1: ipv6-good", file: "rfc5118/ipv6-good", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"}},
		{name: "RFC5118 4.2: ipv6-bad must be rejected", file: "rfc5118/ipv6-bad",
			reason: `Request-URI host: IPv6 reference without brackets ("2001:db8::10"); RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request`},
		{name: "RFC5118 4.3: port-ambiguous: no repair", file: "rfc5118/port-ambiguous", accept: true, ruri: "[2001:db8::10:5070]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"},
			notes: []string{"RFC 5118 §4.3"}},
		{name: "RFC5118 4.4: port-unambiguous: port outside brackets", file: "rfc5118/port-unambiguous", accept: true, ruri: "[2001:db8::10]:5070", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::1]"}},
		{name: "RFC5118 4.5: received with brackets", file: "rfc5118/via-received-param-with-delim", accept: true, quirks: sipaddr.QuirkBracketedReceived, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", received: "2001:db8::9:255"},
		{name: "RFC5118 4.5: received without brackets", file: "rfc5118/via-received-param-no-delim", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", received: "2001:db8::9:255", contacts: []string{"[2001:db8::9:1]"}},
		{name: "RFC5118 4.6: IPv6 in SDP", file: "rfc5118/ipv6-in-sdp", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::20]", contacts: []string{"[2001:db8::20]"},
			media: []string{"IPv6 2001:db8::20 6000", "IPv6 2001:db8::20 6024"}},
		{name: "RFC5118 4.7: IPv4 and IPv6 in one Via list", file: "rfc5118/mult-ip-in-header", accept: true, ruri: "host.example.net", via: "[2001:db8::9:1]:6050"},
		{name: "RFC5118 4.8: IPv4 and IPv6 m-lines", file: "rfc5118/mult-ip-in-sdp", accept: true, ruri: "[2001:db8::10]", via: "[2001:db8::9:1]", contacts: []string{"[2001:db8::9:1]"},
			media: []string{"IPv4 192.0.2.1 22334", "IPv6 2001:db8::1 6024"}},
		{name: "RFC5118 4.9: IPv4-mapped references", file: "rfc5118/ipv4-mapped-ipv6", accept: true, ruri: "example.com", via: "[::ffff:192.0.2.10]:19823", contacts: []string{"[::ffff:192.0.2.2]"},
			media: []string{"IPv6 ::ffff:192.0.2.2 6000", "IPv6 ::ffff:192.0.2.2 6024"}},
		{name: "RFC5118 4.10: three colons tolerated", file: "rfc5118/ipv6-bug-abnf-3-colons", accept: true, quirks: sipaddr.QuirkThreeColons, ruri: "[2001:db8::c000:201]", via: "lab1.east.example.com"},
		{name: "RFC5118 4.10: two colons", file: "rfc5118/ipv6-correct-abnf-2-colons", accept: true, ruri: "[2001:db8::c000:201]", via: "lab1.east.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(readFile(t, tc.file))
			if r.Accept != tc.accept || r.Reason != tc.reason {
				t.Fatalf("verdict accept=%v reason=%q\nwant accept=%v reason=%q", r.Accept, r.Reason, tc.accept, tc.reason)
			}
			for _, want := range tc.notes {
				if !hasSubstring(r.Notes, want) {
					t.Errorf("no note containing %q in %q", want, r.Notes)
				}
			}
			if !tc.accept {
				return
			}
			if r.Quirks != tc.quirks || (tc.quirks == 0) != (len(r.Tolerated) == 0) {
				t.Errorf("quirks = %v %q, want %v", r.Quirks, r.Tolerated, tc.quirks)
			}
			if got := r.URI.HostPort.String(); got != tc.ruri {
				t.Errorf("Request-URI host = %s, want %s", got, tc.ruri)
			}
			if got := r.Vias[0].SentBy.String(); got != tc.via {
				t.Errorf("top Via sent-by = %s, want %s", got, tc.via)
			}
			if tc.received != "" && r.Vias[0].Received.Addr() != netip.MustParseAddr(tc.received) {
				t.Errorf("received = %v, want %s", r.Vias[0].Received.Addr(), tc.received)
			}
			var contacts []string
			for _, c := range r.Contacts {
				contacts = append(contacts, c.URI.HostPort.String())
			}
			if strings.Join(contacts, ",") != strings.Join(tc.contacts, ",") {
				t.Errorf("contacts = %q, want %q", contacts, tc.contacts)
			}
			var media []string
			if r.SDP != nil {
				for _, m := range r.SDP.Media {
					media = append(media, m.Family.String()+" "+m.Address+" "+strconv.Itoa(m.Port))
				}
			}
			if strings.Join(media, ",") != strings.Join(tc.media, ",") {
				t.Errorf("media = %q, want %q", media, tc.media)
			}
		})
	}
}

// msg builds a CRLF message from lines; the body follows an empty line.
func msg(body string, lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + body)
}

var base = []string{
	"To: sip:user@example.com",
	"From: sip:user@example.com;tag=1",
	"Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1",
	"Call-ID: a@b",
	"CSeq: 1 OPTIONS",
	"Max-Forwards: 70",
}

func with(start string, extra ...string) []string {
	return append(append([]string{start}, base...), extra...)
}

func replace(start, name, value string, extra ...string) []string {
	out := []string{start}
	for _, l := range base {
		if strings.HasPrefix(l, name+":") {
			if value == "" {
				continue
			}
			l = name + ": " + value
		}
		out = append(out, l)
	}
	return append(out, extra...)
}

func TestCheckRules(t *testing.T) {
	const opts = "OPTIONS sip:[2001:db8::10] SIP/2.0"
	tests := []struct {
		name   string
		in     []byte
		accept bool
		reason string // exact, for rejects
		note   string // substring of a note, for accepts
	}{
		{name: "RFC3261 7.3.3: compact forms", accept: true, in: msg("", opts, "t: sip:user@example.com", "f: sip:user@example.com;tag=1", "v: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1", "i: a@b", "CSeq: 1 OPTIONS", "m: <sip:[2001:db8::1]:5070>", "l: 0")},
		{name: "RFC3261 7.3.1: header names are case-insensitive", accept: true, in: msg("", opts, "TO: sip:user@example.com", "from: sip:user@example.com;tag=1", "VIA: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1", "call-id: a@b", "cseq: 1 OPTIONS", "content-length: 0")},
		{name: "RFC3261 7.3.1: folded Via value", accept: true, note: "line 5 starts with white space: it continues the Via header", in: msg("", opts, "To: sip:user@example.com", "From: sip:user@example.com;tag=1", "Via: SIP/2.0/UDP [2001:db8::9:1]", "\t;branch=z9hG4bK1", "Call-ID: a@b", "CSeq: 1 OPTIONS", "Content-Length: 0")},
		{name: "RFC3261 7.3.1: comma-separated Vias", accept: true, in: msg("", replace(opts, "Via", "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1, SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bK2", "Content-Length: 0")...)},
		{name: "RFC3261 18.3: Content-Length off is a note", accept: true, note: "Content-Length says 5 but the body has 0 bytes", in: msg("", with(opts, "Content-Length: 5")...)},
		{name: "RFC6874: zoned contact", accept: true, in: msg("", with(opts, "Contact: <sip:[fe80::1%25eth0]:5060>", "Content-Length: 0")...)},
		{name: "RFC6874: raw zone tolerated", accept: true, in: msg("", with(opts, "Contact: <sip:[fe80::1%eth0]>", "Content-Length: 0")...)},
		{name: "RFC3261 10.2.2: Contact *", accept: true, in: msg("", "REGISTER sip:example.com SIP/2.0", "To: sip:user@example.com", "From: sip:user@example.com;tag=1", "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1", "Call-ID: a@b", "CSeq: 2 REGISTER", "Contact: *", "Expires: 0", "Content-Length: 0")},
		{name: "RFC3261 7.2: response", accept: true, in: msg("", "SIP/2.0 200 OK", "To: sip:user@example.com;tag=2", "From: sip:user@example.com;tag=1", "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1;received=2001:db8::9:2;rport=5060", "Call-ID: a@b", "CSeq: 1 OPTIONS", "Content-Length: 0")},
		{name: "RFC3261 7.5: CRLF before the start line", accept: true, note: "empty line(s) before the start line", in: append([]byte("\r\n\r\n"), msg("", with(opts, "Content-Length: 0")...)...)},
		{name: "RFC3261 19.1.1: tel Request-URI not checked", accept: true, note: "not a sip: or sips: URI", in: msg("", with("OPTIONS tel:+12125551212 SIP/2.0", "Content-Length: 0")...)},
		{name: "RFC3261 20.30: Record-Route IPv6", accept: true, in: msg("", with(opts, "Record-Route: <sip:[2001:db8::5];lr>, <sip:192.0.2.5;lr>", "Content-Length: 0")...)},
		{name: "RFC3261 20.15: non-SDP body not checked", accept: true, note: "body of type text/plain not checked", in: msg("hello", with(opts, "Content-Type: text/plain", "Content-Length: 5")...)},

		{name: "RFC5118 4.2: unbracketed IPv6 in Contact", in: msg("", with(opts, "Contact: <sip:caller@2001:db8::1>", "Content-Length: 0")...),
			reason: `Contact host: IPv6 reference without brackets ("2001:db8::1"); RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request`},
		{name: "RFC5118 4.2: unbracketed IPv6 sent-by", in: msg("", replace(opts, "Via", "SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bK1", "Content-Length: 0")...),
			reason: `Via (line 4) sent-by: IPv6 reference without brackets ("2001:db8::9:1"); RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request`},
		{name: "RFC5118 4.2: unbracketed IPv6 in Route", in: msg("", with(opts, "Route: <sip:2001:db8::5;lr>", "Content-Length: 0")...),
			reason: `Route host: IPv6 reference without brackets ("2001:db8::5"); RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request`},
		{name: "RFC3986 3.2.2: [zzzz] in the Request-URI", in: msg("", with("OPTIONS sip:[zzzz] SIP/2.0", "Content-Length: 0")...),
			reason: `Request-URI host: invalid IPv6 reference: character 'z' not allowed ("[zzzz]"); RFC 3986 §3.2.2 IP-literal`},
		{name: "RFC3986 3.2.2: junk after ']' in To", in: msg("", replace(opts, "To", "<sip:user@[2001:db8::1]x>", "Content-Length: 0")...),
			reason: `To host: junk after ']': "x" ("[2001:db8::1]x"); RFC 3986 §3.2.2 IP-literal`},
		{name: "RFC3261 20.42: received is not a name", in: msg("", replace(opts, "Via", "SIP/2.0/UDP [2001:db8::9:1];received=host.example.com", "Content-Length: 0")...),
			reason: `Via (line 4) received: not an IP address ("host.example.com")`},
		{name: "RFC3261 8.1.1: no Call-ID", in: msg("", replace(opts, "Call-ID", "", "Content-Length: 0")...),
			reason: "no Call-ID header (RFC 3261 §8.1.1)"},
		{name: "RFC3261 7.3.1: two From headers", in: msg("", with(opts, "From: sip:other@example.com;tag=2", "Content-Length: 0")...),
			reason: "From appears 2 times (lines 3 and 8); it takes one value (RFC 3261 §7.3.1)"},
		{name: "RFC3261 8.1.1.5: CSeq method mismatch", in: msg("", replace(opts, "CSeq", "1 INVITE", "Content-Length: 0")...),
			reason: "CSeq method INVITE is not the request method OPTIONS (RFC 3261 §8.1.1.5)"},
		{name: "RFC3261 7.1: extra space in the request line", in: msg("", with("OPTIONS  sip:[2001:db8::10] SIP/2.0", "Content-Length: 0")...),
			reason: `request line "OPTIONS  sip:[2001:db8::10] SIP/2.0": want "Method SP Request-URI SP SIP/2.0", single spaces (RFC 3261 §7.1)`},
		{name: "RFC3261 7.1: version", in: msg("", with("OPTIONS sip:[2001:db8::10] SIP/7.0", "Content-Length: 0")...),
			reason: `request line: version "SIP/7.0" is not SIP/2.0 (RFC 3261 §7.1; a UAS answers 505)`},
		{name: "RFC3261 7.2: status code", in: msg("", "SIP/2.0 99 Odd", "Content-Length: 0"),
			reason: `status line: status code "99" is not 100-699 (RFC 3261 §7.2)`},
		{name: "RFC3261 20.14: Content-Length not a number", in: msg("", with(opts, "Content-Length: -1")...),
			reason: `Content-Length "-1" is not a number (RFC 3261 §20.14)`},
		{name: "RFC3261 20.15: body without Content-Type", in: msg("v=0\r\n", with(opts, "Content-Length: 5")...),
			reason: "a 5-byte body and no Content-Type header (RFC 3261 §20.15)"},
		{name: "RFC3261 7.3: header line without colon", in: msg("", with(opts, "Content-Length 0")...),
			reason: `line 8: header line without ':' ("Content-Length 0")`},
		{name: "RFC3261 7.3.1: continuation right after the start line", in: msg("", append([]string{opts, " To: sip:user@example.com"}, base[1:]...)...),
			reason: "line 2 starts with white space right after the start line: there is no header to continue (RFC 3261 §7.3.1)"},
		{name: "RFC3261 25.1: Max-Forwards out of range", in: msg("", replace(opts, "Max-Forwards", "256", "Content-Length: 0")...),
			reason: `Max-Forwards "256" is not 0-255 (RFC 3261 §20.22)`},
		{name: "RFC8866 5.7: SDP c= family mismatch", in: msg("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 2001:db8::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n", with(opts, "Content-Type: application/sdp")...),
			reason: "SDP body: sdpcand: invalid SDP: session c= line: c= address does not match its network type: IN IP4 2001:db8::1 is an IPv6 address"},
		{name: "empty input", in: nil, reason: "empty input: no start line"},
		{name: "RFC3261 7: control character", in: msg("", with(opts, "Subject: a\x00b")...), reason: `line 8: control character '\x00' in the header section`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.in)
			if r.Accept != tc.accept || (!tc.accept && r.Reason != tc.reason) {
				t.Fatalf("accept=%v reason=%q\nwant accept=%v reason=%q", r.Accept, r.Reason, tc.accept, tc.reason)
			}
			if tc.note != "" && !hasSubstring(r.Notes, tc.note) {
				t.Errorf("no note containing %q in %q", tc.note, r.Notes)
			}
		})
	}
}

func hasSubstring(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
