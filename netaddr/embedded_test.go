package netaddr

import (
	"net/netip"
	"slices"
	"testing"
)

func TestEmbeddedIPv4(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want []string
		form EmbeddedForm
	}{
		{"RFC4291 2.5.5.2 IPv4-mapped ::ffff:192.0.2.33", "::ffff:192.0.2.33", []string{"192.0.2.33"}, FormIPv4Mapped},
		{"RFC4291 2.5.5.2 IPv4-mapped ::ffff:127.0.0.1", "::ffff:127.0.0.1", []string{"127.0.0.1"}, FormIPv4Mapped},
		{"RFC4291 2.5.5.1 IPv4-compatible ::127.0.0.1", "::127.0.0.1", []string{"127.0.0.1"}, FormIPv4Compatible},
		{"RFC4291 2.5.5.1 IPv4-compatible ::0.0.0.2 (not ::1)", "::2", []string{"0.0.0.2"}, FormIPv4Compatible},
		{"RFC4291 2.5.5.1 IPv4-compatible ::0.1.0.0", "::1:0", []string{"0.1.0.0"}, FormIPv4Compatible},
		{"RFC4291 2.5.2 unspecified :: embeds nothing", "::", nil, FormNone},
		{"RFC4291 2.5.3 loopback ::1 embeds nothing", "::1", nil, FormNone},
		{"RFC6052 2.4 well-known prefix 64:ff9b::192.0.2.33", "64:ff9b::192.0.2.33", []string{"192.0.2.33"}, FormNAT64},
		{"RFC6052 NAT64 64:ff9b::/96 embeds loopback", "64:ff9b::7f00:1", []string{"127.0.0.1"}, FormNAT64},
		{"RFC8215 local-use 64:ff9b:1::/48, RFC6052 2.2 /48 layout skips u octet", "64:ff9b:1:c000:2:2100::", []string{"192.0.2.33"}, FormNAT64Local},
		{"RFC8215 local-use /48 with suffix bits set", "64:ff9b:1:7f00:0:1ff:ffff:ffff", []string{"127.0.0.1"}, FormNAT64Local},
		{"RFC3056 6to4 2002:c000:221::1", "2002:c000:221::1", []string{"192.0.2.33"}, Form6to4},
		{"RFC3056 6to4 embeds loopback", "2002:7f00:1::1", []string{"127.0.0.1"}, Form6to4},
		{"RFC4380 Teredo server 65.54.227.120, client 192.0.2.45 XOR ffffffff", "2001:0:4136:e378:8000:63bf:3fff:fdd2", []string{"65.54.227.120", "192.0.2.45"}, FormTeredo},
		{"RFC4380 Teredo client 127.0.0.1", "2001:0:808:808:0:f227:80ff:fffe", []string{"8.8.8.8", "127.0.0.1"}, FormTeredo},
		{"RFC4380 Teredo zero server and client", "2001::", []string{"0.0.0.0", "255.255.255.255"}, FormTeredo},
		{"zone is ignored", "2002:7f00:1::1%eth0", []string{"127.0.0.1"}, Form6to4},
		{"RFC4291 2001:1::/32 is not Teredo", "2001:1::2", nil, FormNone},
		{"RFC3849 documentation prefix embeds nothing", "2001:db8::c000:221", nil, FormNone},
		{"64:ff9b:0:1::/64 is outside both NAT64 prefixes", "64:ff9b:0:1::7f00:1", nil, FormNone},
		{"IPv4 address embeds nothing", "127.0.0.1", nil, FormNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, form := EmbeddedIPv4(netip.MustParseAddr(tt.addr))
			var want []netip.Addr
			for _, w := range tt.want {
				want = append(want, netip.MustParseAddr(w))
			}
			if !slices.Equal(got, want) || form != tt.form {
				t.Fatalf("EmbeddedIPv4(%s) = %v, %v; want %v, %v", tt.addr, got, form, want, tt.form)
			}
			dst := make([]netip.Addr, 0, MaxEmbedded)
			got2, form2 := AppendEmbeddedIPv4(dst, netip.MustParseAddr(tt.addr))
			if !slices.Equal(got2, want) || form2 != tt.form {
				t.Fatalf("AppendEmbeddedIPv4(%s) = %v, %v; want %v, %v", tt.addr, got2, form2, want, tt.form)
			}
		})
	}
}

func TestEmbeddedIPv4Invalid(t *testing.T) {
	if got, form := EmbeddedIPv4(netip.Addr{}); got != nil || form != FormNone {
		t.Fatalf("EmbeddedIPv4(zero) = %v, %v; want nil, none", got, form)
	}
}

// TestEmbeddedRoundTrip encodes IPv4 addresses with the test encoders below
// (written from the RFC layouts, independently of embedded) and decodes them.
func TestEmbeddedRoundTrip(t *testing.T) {
	server := netip.MustParseAddr("8.8.8.8")
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "192.0.2.33", "255.255.255.255", "1.0.0.0", "100.64.0.1"} {
		v4 := netip.MustParseAddr(s)
		for _, e := range embeddings(v4, server) {
			got, form := EmbeddedIPv4(e.addr)
			if form != e.form || !slices.Contains(got, v4) {
				t.Errorf("%s as %s (%s): got %v, %v", v4, e.form, e.addr, got, form)
			}
		}
	}
}

func TestEmbeddedFormString(t *testing.T) {
	seen := map[string]bool{}
	for f := FormNone; f <= FormTeredo; f++ {
		s := f.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("EmbeddedForm(%d).String() = %q: empty, unknown or duplicate", f, s)
		}
		seen[s] = true
	}
	if got := EmbeddedForm(200).String(); got != "unknown" {
		t.Errorf("EmbeddedForm(200).String() = %q, want unknown", got)
	}
}

func TestAppendEmbeddedIPv4NoAlloc(t *testing.T) {
	a := netip.MustParseAddr("2001:0:4136:e378:8000:63bf:3fff:fdd2")
	dst := make([]netip.Addr, 0, MaxEmbedded)
	if n := testing.AllocsPerRun(100, func() { dst, _ = AppendEmbeddedIPv4(dst[:0], a) }); n != 0 {
		t.Fatalf("AppendEmbeddedIPv4 allocates %v times per call, want 0", n)
	}
}

// embedding is one IPv6 form of an IPv4 address.
type embedding struct {
	form EmbeddedForm
	addr netip.Addr
}

// embeddings writes v4 in every form EmbeddedIPv4 knows, following the RFC
// layouts byte by byte. Teredo appears twice: v4 as server and as client
// (with the other role played by server). The IPv4-compatible form is left
// out for 0.0.0.0 and 0.0.0.1, which are :: and ::1.
func embeddings(v4, server netip.Addr) []embedding {
	b := v4.As4()
	s := server.As4()
	var out []embedding
	out = append(out, embedding{FormIPv4Mapped, netip.AddrFrom16(v4.As16())})
	if !(b[0]|b[1]|b[2] == 0 && b[3] <= 1) {
		out = append(out, embedding{FormIPv4Compatible, netip.AddrFrom16([16]byte{12: b[0], 13: b[1], 14: b[2], 15: b[3]})})
	}
	out = append(out,
		embedding{FormNAT64, netip.AddrFrom16([16]byte{0x00, 0x64, 0xff, 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})},
		embedding{FormNAT64Local, netip.AddrFrom16([16]byte{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01, b[0], b[1], 0x00, b[2], b[3], 15: 0x01})},
		embedding{Form6to4, netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 15: 0x01})},
		embedding{FormTeredo, netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0, s[0], s[1], s[2], s[3], 0x80, 0, 0xf2, 0x27, ^b[0], ^b[1], ^b[2], ^b[3]})},
		embedding{FormTeredo, netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0, b[0], b[1], b[2], b[3], 0x80, 0, 0xf2, 0x27, ^s[0], ^s[1], ^s[2], ^s[3]})},
	)
	return out
}
