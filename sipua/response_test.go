package sipua

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func parseResponse(t *testing.T, via, extra string) *sip.Response {
	t.Helper()
	raw := "SIP/2.0 200 OK\r\n" +
		"Via: " + via + "\r\n" +
		"From: <sip:alice@example.org>;tag=1\r\n" +
		"To: <sip:alice@example.org>;tag=2\r\n" +
		"Call-ID: r1\r\n" +
		"CSeq: 2 REGISTER\r\n" + extra +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m.(*sip.Response)
}

// TestViaReceived: received= bare or bracketed (RFC 5118 §4.5), rport
// with a value (RFC 3581) or without, junk refused.
func TestViaReceived(t *testing.T) {
	for _, tc := range []struct {
		via  string
		want string
	}{
		{"SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK1;received=2001:db8::9;rport=40000", "[2001:db8::9]:40000"},
		{"SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK1;received=[2001:db8::9];rport=40000", "[2001:db8::9]:40000"},
		{"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=198.51.100.7;rport", "198.51.100.7:5062"},
		{"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=[::ffff:198.51.100.7];rport=1", "198.51.100.7:1"},
		{"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1", "invalid AddrPort"},
		{"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=[zzzz]", "invalid AddrPort"},
		{"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;received=host.example", "invalid AddrPort"},
	} {
		got := viaReceived(parseResponse(t, tc.via, ""))
		if got.String() != tc.want {
			t.Errorf("%s: got %s, want %s", tc.via, got, tc.want)
		}
	}
}

// TestGrantedExpires: the Contact's expires wins over Expires (RFC 3261
// §10.2.4), else Expires, else what was asked.
func TestGrantedExpires(t *testing.T) {
	via := "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1"
	for _, tc := range []struct {
		extra string
		want  time.Duration
	}{
		{"Contact: <sip:alice@192.0.2.10:5060>;expires=600\r\nExpires: 900\r\n", 600 * time.Second},
		{"Expires: 900\r\n", 900 * time.Second},
		{"", time.Hour},
	} {
		if got := grantedExpires(parseResponse(t, via, tc.extra), time.Hour); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.extra, got, tc.want)
		}
	}
}
