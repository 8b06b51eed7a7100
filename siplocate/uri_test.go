package siplocate_test

import (
	"errors"
	"testing"

	"github.com/isthmusrelay/isthmus/siplocate"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		name, in  string
		scheme    siplocate.Scheme
		host      string
		numeric   bool
		port      uint16
		transport siplocate.Transport
		maddr     string
		wantErr   error
	}{
		{name: "RFC3261 19.1: user, password, params, headers", in: "sip:alice:secret@Example.TEST;user=phone;lr?subject=x", scheme: siplocate.SchemeSIP, host: "example.test"},
		{name: "RFC3261 25.1: user part may hold ; and ?", in: "sip:a;b?c@example.test:5070", scheme: siplocate.SchemeSIP, host: "example.test", port: 5070},
		{name: "RFC5118 4.1: IPv6 reference with port", in: "sip:bob@[2001:DB8::1]:5070;transport=TCP", scheme: siplocate.SchemeSIP, host: "2001:db8::1", numeric: true, port: 5070, transport: siplocate.TCP},
		{name: "RFC5118 4.3: IPv4-mapped reference is the IPv4 host", in: "sip:[::ffff:192.0.2.1]", scheme: siplocate.SchemeSIP, host: "192.0.2.1", numeric: true},
		{name: "RFC3261 19.1.2: sips: with transport=tcp is TLS", in: "sips:example.test;transport=tcp", scheme: siplocate.SchemeSIPS, host: "example.test", transport: siplocate.TLS},
		{name: "transport=tls on sip: (deprecated, still seen)", in: "sip:example.test;transport=tls", scheme: siplocate.SchemeSIP, host: "example.test", transport: siplocate.TLS},
		{name: "RFC3263 4: maddr", in: "sip:example.test;maddr=[2001:db8::9]", scheme: siplocate.SchemeSIP, host: "example.test", maddr: "2001:db8::9"},
		{name: "trailing dot of a FQDN", in: "sip:example.test.", scheme: siplocate.SchemeSIP, host: "example.test"},
		{name: "numeric host with trailing dot is still numeric", in: "sip:192.0.2.1.", scheme: siplocate.SchemeSIP, host: "192.0.2.1", numeric: true},
		{name: "RFC7065 3: turn: with query", in: "turn:example.test?transport=tcp", scheme: siplocate.SchemeTURN, host: "example.test", transport: siplocate.TCP},
		{name: "RFC7065 3: turns: IPv6 with port", in: "turns:[2001:db8::1]:5349", scheme: siplocate.SchemeTURNS, host: "2001:db8::1", numeric: true, port: 5349},
		{name: "RFC7064 3.1: stun:", in: "stun:example.test:3478", scheme: siplocate.SchemeSTUN, host: "example.test", port: 3478},

		{name: "no scheme", in: "example.test", wantErr: siplocate.ErrBadURI},
		{name: "unknown scheme", in: "http://example.test", wantErr: siplocate.ErrBadURI},
		{name: "RFC7065 3: no // after turn:", in: "turn://example.test", wantErr: siplocate.ErrBadURI},
		{name: "RFC5118 4.1: bare IPv6 is refused", in: "sip:2001:db8::1", wantErr: siplocate.ErrBadURI},
		{name: "unclosed bracket", in: "sip:[2001:db8::1", wantErr: siplocate.ErrBadURI},
		{name: "IPv4 in brackets", in: "sip:[192.0.2.1]", wantErr: siplocate.ErrBadURI},
		{name: "zone in a reference", in: "sip:[fe80::1%eth0]", wantErr: siplocate.ErrBadURI},
		{name: "port 0", in: "sip:example.test:0", wantErr: siplocate.ErrBadURI},
		{name: "port too big", in: "sip:example.test:65536", wantErr: siplocate.ErrBadURI},
		{name: "empty port", in: "sip:example.test:", wantErr: siplocate.ErrBadURI},
		{name: "empty host", in: "sip:alice@", wantErr: siplocate.ErrBadURI},
		{name: "label with a space", in: "sip:exa mple.test", wantErr: siplocate.ErrBadURI},
		{name: "empty label", in: "sip:example..test", wantErr: siplocate.ErrBadURI},
		{name: "label starting with -", in: "sip:-example.test", wantErr: siplocate.ErrBadURI},
		{name: "duplicate transport", in: "sip:example.test;transport=udp;transport=tcp", wantErr: siplocate.ErrBadURI},
		{name: "RFC7064 3.1: stun: takes no query", in: "stun:example.test?transport=udp", wantErr: siplocate.ErrBadURI},
		{name: "RFC7065 3: unknown TURN query", in: "turn:example.test?foo=bar", wantErr: siplocate.ErrBadURI},
		{name: "turn: has no user part", in: "turn:alice@example.test", wantErr: siplocate.ErrBadURI},
		{name: "RFC5630 3.1.3: sips: over UDP", in: "sips:example.test;transport=udp", wantErr: siplocate.ErrUnsupportedTransport},
		{name: "RFC7350: turns: over UDP is DTLS, not supported", in: "turns:example.test?transport=udp", wantErr: siplocate.ErrUnsupportedTransport},
		{name: "sctp is not supported", in: "sip:example.test;transport=sctp", wantErr: siplocate.ErrUnsupportedTransport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := siplocate.ParseURI(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseURI(%q) = %+v, %v; want %v", tt.in, u, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			if u.Scheme != tt.scheme || u.Host != tt.host || u.Addr.IsValid() != tt.numeric || u.Port != tt.port || u.Transport != tt.transport || u.MAddr != tt.maddr {
				t.Errorf("ParseURI(%q) = %+v", tt.in, u)
			}
		})
	}
}
