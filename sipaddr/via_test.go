package sipaddr

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseVia(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		transport string
		sentBy    string
		received  string // netip text; "" none
		quirks    Quirk  // of Received
		rport     uint16
		hasRPort  bool
		branch    string
		out       string
		err       error
	}{
		{name: "RFC5118 4.1: IPv6 sent-by", in: "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111", transport: "UDP", sentBy: "[2001:db8::9:1]", branch: "z9hG4bKas3-111", out: "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111"},
		{name: "RFC5118 4.7: IPv6 sent-by with port", in: "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111", transport: "UDP", sentBy: "[2001:db8::9:1]:6050", branch: "z9hG4bKas3-111", out: "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"},
		{name: "RFC5118 4.7: IPv4 received on IPv6 sent-by", in: "SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200", transport: "TCP", sentBy: "[2001:db8::9:255]", received: "192.0.2.200", branch: "z9hG4bK451jj", out: "SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200"},
		{name: "RFC5118 4.5: received with brackets", in: "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111", transport: "UDP", sentBy: "[2001:db8::9:1]", received: "2001:db8::9:255", quirks: QuirkBracketedReceived, branch: "z9hG4bKas3-111", out: "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=2001:db8::9:255"},
		{name: "RFC5118 4.5: received without brackets", in: "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3", transport: "UDP", sentBy: "[2001:db8::9:1]", received: "2001:db8::9:255", branch: "z9hG4bKas3", out: "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;received=2001:db8::9:255"},
		{name: "RFC5118 4.9: IPv4-mapped sent-by", in: "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19", transport: "UDP", sentBy: "[::ffff:192.0.2.10]:19823", branch: "z9hG4bKbh19", out: "SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19"},
		{name: "RFC3581 3: rport without value", in: "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport", transport: "UDP", sentBy: "[2001:db8::1]:5060", hasRPort: true, branch: "z9hG4bK1", out: "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"},
		{name: "RFC3581 4: rport and received filled in", in: "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::99;rport=40000", transport: "UDP", sentBy: "[2001:db8::1]:5060", received: "2001:db8::99", rport: 40000, hasRPort: true, branch: "z9hG4bK1", out: "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::99;rport=40000"},
		{name: "RFC3261 25.1: LWS around slashes, colon and semicolons", in: "SIP / 2.0 / TCP example.com : 5070 ; branch = z9hG4bK2 ; maddr=[ff15::1];ttl=16", transport: "TCP", sentBy: "example.com:5070", branch: "z9hG4bK2", out: "SIP/2.0/TCP example.com:5070;branch=z9hG4bK2;maddr=[ff15::1];ttl=16"},
		{name: "RFC6874: zoned received written in brackets", in: "SIP/2.0/UDP [fe80::1%25eth0];received=fe80::2%eth0", transport: "UDP", sentBy: "[fe80::1%25eth0]", received: "fe80::2%eth0", quirks: QuirkRawZone, out: "SIP/2.0/UDP [fe80::1%25eth0];received=[fe80::2%25eth0]"},
		{name: "RFC5118 4.10: three-colon received tolerated", in: "SIP/2.0/UDP host.example.com;received=2001:db8:::192.0.2.1", transport: "UDP", sentBy: "host.example.com", received: "2001:db8::192.0.2.1", quirks: QuirkThreeColons, out: "SIP/2.0/UDP host.example.com;received=2001:db8::c000:201"},

		{name: "RFC5118 4.2: unbracketed IPv6 sent-by", in: "SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bK1", err: ErrUnbracketedIPv6},
		{name: "RFC3986 3.2.2: junk in sent-by brackets", in: "SIP/2.0/UDP [zzzz];branch=z9hG4bK1", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: junk after sent-by bracket", in: "SIP/2.0/UDP [2001:db8::1]x;branch=z9hG4bK1", err: ErrAfterBracket},
		{name: "RFC3261 20.42: received is not a name", in: "SIP/2.0/UDP [2001:db8::1];received=host.example.com", err: ErrNotIP},
		{name: "RFC3261 20.42: bad IPv6 received", in: "SIP/2.0/UDP [2001:db8::1];received=[2001:db8::zz]", err: ErrBadIPv6},
		{name: "RFC3261 20.42: half-bracketed received", in: "SIP/2.0/UDP [2001:db8::1];received=[2001:db8::1", err: ErrBrackets},
		{name: "RFC3261 20.42: IPv4 received in brackets", in: "SIP/2.0/UDP [2001:db8::1];received=[192.0.2.1]", err: ErrIPv4InBrackets},
		{name: "RFC3261 20.42: empty received", in: "SIP/2.0/UDP [2001:db8::1];received=", err: ErrEmpty},
		{name: "RFC3581: rport out of range", in: "SIP/2.0/UDP [2001:db8::1];rport=70000", err: ErrBadParam},
		{name: "RFC3261 20.42: unbracketed maddr", in: "SIP/2.0/UDP [2001:db8::1];maddr=ff15::1", err: ErrUnbracketedIPv6},
		{name: "RFC3261 20.42: no sent-by", in: "SIP/2.0/UDP", err: ErrBadVia},
		{name: "RFC3261 20.42: no transport", in: "SIP/2.0 [2001:db8::1]", err: ErrBadVia},
		{name: "RFC3261 20.42: white space inside sent-by", in: "SIP/2.0/UDP exa mple.com;branch=z9hG4bK1", err: ErrBadVia},
		{name: "RFC3261 20.42: bad branch", in: "SIP/2.0/UDP example.com;branch=a:b", err: ErrBadParam},
		{name: "RFC3261 25.1: bad extension value", in: "SIP/2.0/UDP example.com;x=a b", err: ErrBadParam},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseVia(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseVia(%q) = %+v, %v; want %v", tc.in, v, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVia(%q): %v", tc.in, err)
			}
			if v.Protocol != "SIP/2.0" || v.Transport != tc.transport || v.SentBy.String() != tc.sentBy || v.Branch != tc.branch || v.RPort != tc.rport || v.HasRPort != tc.hasRPort {
				t.Errorf("ParseVia(%q) = %+v", tc.in, v)
			}
			if tc.received == "" {
				if v.Received.IsValid() {
					t.Errorf("Received = %v, want none", v.Received)
				}
			} else if v.Received.Addr() != netip.MustParseAddr(tc.received) || v.Received.Quirks() != tc.quirks {
				t.Errorf("Received = %v (quirks %v), want %s (quirks %v)", v.Received.Addr(), v.Received.Quirks(), tc.received, tc.quirks)
			}
			if got := v.String(); got != tc.out {
				t.Errorf("String() = %q, want %q", got, tc.out)
			}
			back, err := ParseVia(v.String())
			if err != nil || back.String() != v.String() {
				t.Errorf("re-read of %q: %v, %v", v.String(), back, err)
			}
		})
	}
}

func TestParseViaList(t *testing.T) {
	vias, err := ParseViaList("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb")
	if err != nil || len(vias) != 2 || vias[0].SentBy.String() != "[2001:db8::9:1]:6050" || vias[1].SentBy.String() != "192.0.2.1" {
		t.Fatalf("ParseViaList = %+v, %v", vias, err)
	}
	if _, err := ParseViaList("SIP/2.0/UDP [2001:db8::1], SIP/2.0/UDP 2001:db8::2"); !errors.Is(err, ErrUnbracketedIPv6) {
		t.Errorf("second Via unbracketed: %v", err)
	}
}

func TestParseReceived(t *testing.T) {
	for _, in := range []string{"2001:db8::9:255", "[2001:db8::9:255]"} {
		h, err := ParseReceived(in)
		if err != nil || h.Addr() != netip.MustParseAddr("2001:db8::9:255") {
			t.Errorf("RFC5118 4.5: ParseReceived(%q) = %v, %v", in, h, err)
		}
	}
}
