package sipaddr

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		kind   Kind
		addr   string // netip text, zone included
		str    string // String()
		quirks Quirk
		err    error
	}{
		{name: "RFC3261 25.1: hostname", in: "host.example.com", kind: KindName, str: "host.example.com"},
		{name: "RFC3261 25.1: hostname with trailing dot", in: "example.com.", kind: KindName, str: "example.com."},
		{name: "RFC3261 25.1: single-label hostname", in: "localhost", kind: KindName, str: "localhost"},
		{name: "RFC3261 25.1: IPv4address", in: "192.0.2.1", kind: KindIPv4, addr: "192.0.2.1", str: "192.0.2.1"},
		{name: "RFC3261 25.1: IPv6reference", in: "[2001:db8::10]", kind: KindIPv6, addr: "2001:db8::10", str: "[2001:db8::10]"},
		{name: "RFC5952: written in canonical form", in: "[2001:0DB8:0:0:0:0:0:0001]", kind: KindIPv6, addr: "2001:db8::1", str: "[2001:db8::1]"},
		{name: "RFC5118 4.3: last group inside brackets is address", in: "[2001:db8::10:5070]", kind: KindIPv6, addr: "2001:db8::10:5070", str: "[2001:db8::10:5070]"},
		{name: "RFC5118 4.9: IPv4-mapped reference", in: "[::ffff:192.0.2.1]", kind: KindIPv6, addr: "::ffff:192.0.2.1", str: "[::ffff:192.0.2.1]"},
		{name: "RFC5118 4.10: two colons before embedded IPv4", in: "[2001:db8::192.0.2.1]", kind: KindIPv6, addr: "2001:db8::c000:201", str: "[2001:db8::c000:201]"},
		{name: "RFC5118 4.10: three colons tolerated", in: "[2001:db8:::192.0.2.1]", kind: KindIPv6, addr: "2001:db8::c000:201", str: "[2001:db8::c000:201]", quirks: QuirkThreeColons},
		{name: "RFC5118 4.10: leading three colons tolerated", in: "[:::192.0.2.1]", kind: KindIPv6, addr: "::c000:201", str: "[::c000:201]", quirks: QuirkThreeColons},
		{name: "RFC6874: zone after %25", in: "[fe80::1%25eth0]", kind: KindIPv6, addr: "fe80::1%eth0", str: "[fe80::1%25eth0]"},
		{name: "RFC6874: zone after bare % tolerated, written %25", in: "[fe80::1%eth0]", kind: KindIPv6, addr: "fe80::1%eth0", str: "[fe80::1%25eth0]", quirks: QuirkRawZone},
		{name: "RFC6874: escaped zone byte decoded and re-escaped", in: "[fe80::1%25en%2F1]", kind: KindIPv6, addr: "fe80::1%en/1", str: "[fe80::1%25en%2F1]"},

		{name: "RFC5118 4.2: IPv6 without brackets", in: "2001:db8::10", err: ErrUnbracketedIPv6},
		{name: "RFC5118 4.2: IPv4-mapped without brackets", in: "::ffff:192.0.2.1", err: ErrUnbracketedIPv6},
		{name: "RFC3986 3.2.2: junk inside brackets", in: "[zzzz]", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: empty brackets", in: "[]", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: IPvFuture not SIP", in: "[v1.fe80::a]", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: IPv4 in brackets", in: "[192.0.2.1]", err: ErrIPv4InBrackets},
		{name: "RFC4291: too many groups", in: "[1:2:3:4:5:6:7:8:9]", err: ErrBadIPv6},
		{name: "RFC4291: two double colons", in: "[2001::db8::1]", err: ErrBadIPv6},
		{name: "RFC5118 4.10: three colons not before IPv4", in: "[2001:db8:::1]", err: ErrBadIPv6},
		{name: "RFC5118 4.10: four colons", in: "[2001:db8::::192.0.2.1]", err: ErrBadIPv6},
		{name: "RFC5118 4.10: three colons with a second double colon", in: "[2001::db8:::192.0.2.1]", err: ErrBadIPv6},
		{name: "RFC3986 3.2.2: junk after bracket", in: "[2001:db8::1]x", err: ErrAfterBracket},
		{name: "RFC3986 3.2.2: port without colon", in: "[2001:db8::1]5060", err: ErrAfterBracket},
		{name: "RFC3986 3.2.2: no closing bracket", in: "[2001:db8::1", err: ErrBrackets},
		{name: "RFC3986 3.2.2: closing bracket only", in: "2001:db8::1]", err: ErrBrackets},
		{name: "RFC6874: empty zone", in: "[fe80::1%25]", err: ErrBadIPv6},
		{name: "RFC6874: empty raw zone", in: "[fe80::1%]", err: ErrBadIPv6},
		{name: "RFC6874: bad zone character", in: "[fe80::1%25e th0]", err: ErrBadIPv6},
		{name: "RFC6874: bad escape in zone", in: "[fe80::1%25eth%zz]", err: ErrBadIPv6},
		{name: "RFC3261 25.1: IPv4 octet out of range", in: "192.0.2.256", err: ErrBadIPv4},
		{name: "RFC3261 25.1: IPv4 with leading zero (octal ambiguity)", in: "192.0.2.01", err: ErrBadIPv4},
		{name: "RFC3261 25.1: three-part dotted number", in: "192.0.2", err: ErrBadIPv4},
		{name: "RFC3261 25.1: top label starts with digit", in: "host.123a", err: ErrBadHostname},
		{name: "RFC3261 25.1: underscore", in: "my_host.example.com", err: ErrBadHostname},
		{name: "RFC3261 25.1: empty label", in: "a..example.com", err: ErrBadHostname},
		{name: "RFC3261 25.1: hyphen at label end", in: "a-.example.com", err: ErrBadHostname},
		{name: "RFC3261 25.1: empty host", in: "", err: ErrEmpty},
		{name: "maddr-style host refuses a port", in: "example.com:5060", err: ErrPortNotAllowed},
		{name: "maddr-style host refuses a port after brackets", in: "[2001:db8::1]:5060", err: ErrPortNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHost(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseHost(%q) = %v, %v; want error %v", tc.in, h, err, tc.err)
				}
				var e *Error
				if !errors.As(err, &e) || e.Input == "" && tc.in != "" {
					t.Fatalf("error %v is not an *Error naming the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tc.in, err)
			}
			if h.Kind() != tc.kind {
				t.Errorf("Kind = %v, want %v", h.Kind(), tc.kind)
			}
			if tc.addr != "" && h.Addr() != netip.MustParseAddr(tc.addr) {
				t.Errorf("Addr = %v, want %v", h.Addr(), tc.addr)
			}
			if got := h.String(); got != tc.str {
				t.Errorf("String = %q, want %q", got, tc.str)
			}
			if h.Quirks() != tc.quirks {
				t.Errorf("Quirks = %v, want %v", h.Quirks(), tc.quirks)
			}
			// What we write we read back as the same host, without quirks.
			back, err := ParseHost(h.String())
			if err != nil || !back.Equal(h) || back.Quirks() != 0 {
				t.Errorf("ParseHost(String()) = %v (quirks %v), %v; want %v without quirks", back, back.Quirks(), err, h)
			}
		})
	}
}

func TestHostWriteAlwaysBrackets(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"2001:db8::1", "[2001:db8::1]"},
		{"::ffff:192.0.2.1", "[::ffff:192.0.2.1]"},
		{"fe80::1%eth0", "[fe80::1%25eth0]"},
		{"::ffff:192.0.2.1%eth0", "[::ffff:192.0.2.1%25eth0]"},
		{"::", "[::]"},
		{"192.0.2.1", "192.0.2.1"},
	} {
		h := HostFromAddr(netip.MustParseAddr(tc.addr))
		if got := h.String(); got != tc.want {
			t.Errorf("HostFromAddr(%s).String() = %q, want %q", tc.addr, got, tc.want)
		}
		hp := HostPort{Host: h, Port: 5060}
		if got, want := hp.String(), tc.want+":5060"; got != want {
			t.Errorf("HostPort.String() = %q, want %q", got, want)
		}
	}
	if got := (Host{}).String(); got != "" {
		t.Errorf("zero Host writes %q", got)
	}
}

func TestHostEqual(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"RFC3261 19.1.4: names compare without case", "Example.COM", "example.com", true},
		{"RFC3261 19.1.4: trailing dot is the same name", "example.com.", "example.com", true},
		{"RFC5954 3: IPv6 compares by value", "[2001:db8:0:0::1]", "[2001:DB8::1]", true},
		{"RFC5118 4.10: three-colon form equals two-colon form", "[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]", true},
		{"RFC6874: zone is part of the address", "[fe80::1%25eth0]", "[fe80::1]", false},
		{"mapped is not the IPv4 address", "[::ffff:192.0.2.1]", "192.0.2.1", false},
		{"name is not an address", "localhost", "[::1]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err1 := ParseHost(tc.a)
			b, err2 := ParseHost(tc.b)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if got := a.Equal(b); got != tc.want {
				t.Errorf("%s Equal %s = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		name string
		in   string
		host string
		port uint16
		err  error
	}{
		{name: "RFC5118 4.4: port outside brackets", in: "[2001:db8::10]:5070", host: "[2001:db8::10]", port: 5070},
		{name: "RFC5118 4.3: no repair of a port-like last group", in: "[2001:db8::10:5070]", host: "[2001:db8::10:5070]", port: 0},
		{name: "RFC3261 25.1: name and port", in: "host.example.com:5061", host: "host.example.com", port: 5061},
		{name: "RFC3261 25.1: IPv4 and port", in: "192.0.2.1:5060", host: "192.0.2.1", port: 5060},
		{name: "RFC3261 25.1: no port", in: "192.0.2.1", host: "192.0.2.1"},
		{name: "RFC5118 4.2: unbracketed IPv6 with port-like tail", in: "2001:db8::10:5070", err: ErrUnbracketedIPv6},
		{name: "RFC3261 25.1: empty port", in: "[2001:db8::1]:", err: ErrBadPort},
		{name: "RFC3261 25.1: port out of range", in: "example.com:65536", err: ErrBadPort},
		{name: "RFC3261 25.1: port zero names no port", in: "example.com:0", err: ErrBadPort},
		{name: "RFC3261 25.1: signed port", in: "example.com:+5060", err: ErrBadPort},
		{name: "RFC3261 25.1: port too long", in: "example.com:005060", err: ErrBadPort},
		{name: "RFC3261 25.1: second port after brackets", in: "[2001:db8::1]:5060:5061", err: ErrBadPort},
		{name: "RFC3986 3.2.2: junk between bracket and colon", in: "[2001:db8::1] :5060", err: ErrAfterBracket},
		{name: "RFC3261 25.1: empty host with port", in: ":5060", err: ErrEmpty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hp, err := ParseHostPort(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseHostPort(%q) = %v, %v; want %v", tc.in, hp, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHostPort(%q): %v", tc.in, err)
			}
			if hp.Host.String() != tc.host || hp.Port != tc.port {
				t.Errorf("ParseHostPort(%q) = %s port %d, want %s port %d", tc.in, hp.Host, hp.Port, tc.host, tc.port)
			}
			if back, err := ParseHostPort(hp.String()); err != nil || back != hp {
				t.Errorf("round trip of %q: %v, %v", hp, back, err)
			}
		})
	}
}

func TestHostPortAddrPort(t *testing.T) {
	hp, err := ParseHostPort("[2001:db8::10]")
	if err != nil {
		t.Fatal(err)
	}
	if ap, ok := hp.AddrPort(5060); !ok || ap != netip.MustParseAddrPort("[2001:db8::10]:5060") {
		t.Errorf("AddrPort = %v, %v", ap, ok)
	}
	name, _ := ParseHostPort("example.com:5070")
	if _, ok := name.AddrPort(5060); ok {
		t.Error("a name has no AddrPort without resolution")
	}
	if got := HostPortFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060")).String(); got != "[::ffff:192.0.2.1]:5060" {
		t.Errorf("HostPortFromAddrPort = %q", got)
	}
}

func TestErrorText(t *testing.T) {
	_, err := ParseHost("2001:db8::10")
	if got, want := err.Error(), `sipaddr: host "2001:db8::10": IPv6 reference without brackets`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = ParseHost("[zzzz]")
	if got, want := err.Error(), `sipaddr: host "[zzzz]": invalid IPv6 reference: character 'z' not allowed`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
