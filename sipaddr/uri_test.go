package sipaddr

import (
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		scheme string
		user   string
		host   string
		port   uint16
		params int
		out    string // String(); "" means same as in
		err    error
	}{
		{name: "RFC5118 4.1: IPv6 reference in Request-URI", in: "sip:[2001:db8::10]", scheme: "sip", host: "[2001:db8::10]"},
		{name: "RFC5118 4.3: port inside brackets is address", in: "sip:[2001:db8::10:5070]", scheme: "sip", host: "[2001:db8::10:5070]"},
		{name: "RFC5118 4.4: port outside brackets", in: "sip:[2001:db8::10]:5070", scheme: "sip", host: "[2001:db8::10]", port: 5070},
		{name: "RFC5118 4.6: user at IPv6 reference", in: "sip:user@[2001:db8::10]", scheme: "sip", user: "user", host: "[2001:db8::10]"},
		{name: "RFC5118 4.9: IPv4-mapped contact", in: "sip:ted@[::ffff:192.0.2.2]", scheme: "sip", user: "ted", host: "[::ffff:192.0.2.2]"},
		{name: "RFC5118 4.10: three colons tolerated, written with two", in: "sip:user@[2001:db8:::192.0.2.1]", scheme: "sip", user: "user", host: "[2001:db8::c000:201]", out: "sip:user@[2001:db8::c000:201]"},
		{name: "RFC3261 19.1.1: sips with params and headers", in: "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x&priority=urgent", scheme: "sips", user: "alice", host: "[2001:db8::1]", port: 5061, params: 2},
		{name: "RFC3261 19.1.1: scheme is case-insensitive", in: "SIP:bob@example.com", scheme: "sip", user: "bob", host: "example.com", out: "sip:bob@example.com"},
		{name: "RFC3261 25.1: user part may hold ';' and '?'", in: "sip:+1-212-555-1212;phone-context=x?y@example.com;user=phone", scheme: "sip", user: "+1-212-555-1212;phone-context=x?y", host: "example.com", params: 1},
		{name: "RFC3261 19.1.1: maddr IPv6 reference", in: "sip:example.com;maddr=[2001:db8::1]", scheme: "sip", host: "example.com", params: 1},
		{name: "RFC3261 25.1: escaped user", in: "sip:%61lice@example.com", scheme: "sip", user: "%61lice", host: "example.com"},

		{name: "RFC5118 4.2: unbracketed IPv6 host", in: "sip:2001:db8::10", err: ErrUnbracketedIPv6},
		{name: "RFC5118 4.2: unbracketed IPv6 host after user", in: "sip:user@2001:db8::10", err: ErrUnbracketedIPv6},
		{name: "RFC5118 4.2: unbracketed maddr", in: "sip:example.com;maddr=2001:db8::1", err: ErrUnbracketedIPv6},
		{name: "RFC3986 3.2.2: junk in brackets", in: "sip:user@[zzzz]", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: junk after bracket", in: "sip:user@[2001:db8::1]x;lr", err: ErrAfterBracket},
		{name: "RFC3261 19.1.1: other scheme", in: "tel:+12125551212", err: ErrNotSIPURI},
		{name: "RFC3261 25.1: no scheme", in: "user@example.com", err: ErrBadURI},
		{name: "RFC3261 25.1: two '@'", in: "sip:a@b@example.com", err: ErrBadURI},
		{name: "RFC3261 25.1: empty user", in: "sip:@example.com", err: ErrBadURI},
		{name: "RFC3261 25.1: space in URI", in: "sip:user@example.com ;lr", err: ErrBadURI},
		{name: "RFC3261 25.1: bad escape", in: "sip:us%zzer@example.com", err: ErrBadURI},
		{name: "RFC3261 25.1: empty parameter", in: "sip:example.com;;lr", err: ErrBadParam},
		{name: "RFC3261 19.1.1: ttl out of range", in: "sip:example.com;ttl=256", err: ErrBadParam},
		{name: "RFC3261 25.1: empty headers", in: "sip:example.com?", err: ErrBadURI},
		{name: "RFC3261 25.1: no host", in: "sip:user@", err: ErrEmpty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseURI(%q) = %+v, %v; want %v", tc.in, u, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.in, err)
			}
			if u.Scheme != tc.scheme || u.User != tc.user || u.HostPort.Host.String() != tc.host || u.HostPort.Port != tc.port || len(u.Params) != tc.params {
				t.Errorf("ParseURI(%q) = scheme %q user %q host %s port %d params %d; want %q %q %s %d %d",
					tc.in, u.Scheme, u.User, u.HostPort.Host, u.HostPort.Port, len(u.Params), tc.scheme, tc.user, tc.host, tc.port, tc.params)
			}
			want := tc.out
			if want == "" {
				want = tc.in
			}
			if got := u.String(); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
}

func TestURIErrorNamesHost(t *testing.T) {
	_, err := ParseURI("sip:2001:db8::10")
	var e *Error
	if !errors.As(err, &e) || e.Part != "URI host" || e.Input != "2001:db8::10" || e.Reason() != "IPv6 reference without brackets" {
		t.Fatalf("error = %#v", err)
	}
}

func TestURIHelpers(t *testing.T) {
	u, err := ParseURI("sips:example.com;MADDR=[2001:db8::1];transport=tls")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := u.Param("maddr"); !ok || v != "[2001:db8::1]" {
		t.Errorf("Param(maddr) = %q, %v", v, ok)
	}
	if h, ok := u.MAddr(); !ok || h.String() != "[2001:db8::1]" {
		t.Errorf("MAddr = %v, %v", h, ok)
	}
	if u.DefaultPort() != 5061 {
		t.Errorf("sips DefaultPort = %d", u.DefaultPort())
	}
	hp, err := ParseURIHost("sip:bob@[2001:db8::10]:5070;lr")
	if err != nil || hp.String() != "[2001:db8::10]:5070" {
		t.Errorf("ParseURIHost = %v, %v", hp, err)
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		display string
		host    string
		params  int
		sip     bool
		out     string
		err     error
	}{
		{name: "RFC5118 4.1: quoted display and IPv6 contact", in: `"Caller" <sip:caller@[2001:db8::1]>`, display: `"Caller"`, host: "[2001:db8::1]", sip: true, out: `"Caller" <sip:caller@[2001:db8::1]>`},
		{name: "RFC3261 20.10: addr-spec params are header params", in: "sip:user@example.com;tag=81x2", host: "example.com", params: 1, sip: true, out: "<sip:user@example.com>;tag=81x2"},
		{name: "RFC3261 20.10: token display name", in: "Bob Smith <sip:bob@[2001:db8::2]:5070;lr>;expires=60", display: "Bob Smith", host: "[2001:db8::2]", params: 1, sip: true, out: "Bob Smith <sip:bob@[2001:db8::2]:5070;lr>;expires=60"},
		{name: "RFC3261 25.1: quoted display with '<' inside", in: `"a <b>" <sip:x@example.com>`, display: `"a <b>"`, host: "example.com", sip: true, out: `"a <b>" <sip:x@example.com>`},
		{name: "RFC3261 25.1: IPv6 reference as gen-value", in: "<sip:x@example.com>;via=[2001:db8::1]", host: "example.com", params: 1, sip: true, out: "<sip:x@example.com>;via=[2001:db8::1]"},
		{name: "RFC3261 20.10: tel URI kept as written", in: "<tel:+12125551212>;tag=1", params: 1, out: "<tel:+12125551212>;tag=1"},
		{name: "RFC3261 10.2.2: wildcard contact", in: "*", out: "*"},

		{name: "RFC5118 4.2: unbracketed IPv6 in contact", in: "<sip:caller@2001:db8::1>", err: ErrUnbracketedIPv6},
		{name: "RFC3261 7.3.1: folded Via swallowed into From", in: "sip:user@example.com;tag=81x2 Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK", err: ErrBadParam},
		{name: "RFC3261 25.1: unterminated quote", in: `"Caller <sip:x@example.com>`, err: ErrBadAddress},
		{name: "RFC3261 25.1: '<' without '>'", in: "<sip:x@example.com", err: ErrBadAddress},
		{name: "RFC3261 25.1: display name not tokens", in: "Bob@home <sip:x@example.com>", err: ErrBadAddress},
		{name: "RFC3261 25.1: junk after '>'", in: "<sip:x@example.com> junk", err: ErrBadParam},
		{name: "RFC3261 25.1: empty", in: " ", err: ErrEmpty},
		{name: "RFC3261 25.1: not a URI", in: "<nothing>", err: ErrBadAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAddress(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseAddress(%q) = %+v, %v; want %v", tc.in, a, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tc.in, err)
			}
			if a.Display != tc.display || a.IsSIP() != tc.sip || len(a.Params) != tc.params || (tc.sip && a.URI.HostPort.Host.String() != tc.host) {
				t.Errorf("ParseAddress(%q) = %+v", tc.in, a)
			}
			if got := a.String(); got != tc.out {
				t.Errorf("String() = %q, want %q", got, tc.out)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	got, err := SplitList(`"a, b" <sip:a@example.com;x=1,2>;q=0.5 , <sip:[2001:db8::1]>`)
	if err != nil || len(got) != 2 || got[0] != `"a, b" <sip:a@example.com;x=1,2>;q=0.5` || got[1] != "<sip:[2001:db8::1]>" {
		t.Fatalf("SplitList = %q, %v", got, err)
	}
	if _, err := SplitList(`"open`); err == nil {
		t.Error("open quote accepted")
	}
	if _, err := SplitList(`<sip:a@b`); err == nil {
		t.Error("open '<' accepted")
	}
}
