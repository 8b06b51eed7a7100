package netaddr

import (
	"net/netip"
	"testing"
)

// BenchmarkCheck measures the per-permission cost on a policy of realistic
// size; run with -benchmem (Check must not allocate).
func BenchmarkCheck(b *testing.B) {
	p := NewPeerPolicy(PeerPolicyConfig{
		Allow: mustPrefixes(b, "192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32", "10.10.0.0/16"),
		Deny:  mustPrefixes(b, "203.0.113.0/24", "8.8.4.0/24", "2001:db8:bad::/48", "100.64.0.0/10"),
		Own:   []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")},
	})
	for _, bc := range []struct{ name, addr string }{
		{"ipv4-global", "8.8.8.8"},
		{"ipv4-mapped-loopback", "::ffff:127.0.0.1"},
		{"ipv6-global", "2a00:1450:4001::1"},
		{"nat64-allowed", "64:ff9b::c000:201"},
		{"teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
	} {
		a := netip.MustParseAddr(bc.addr)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Check(a)
			}
		})
	}
}

func BenchmarkEmbeddedIPv4(b *testing.B) {
	a := netip.MustParseAddr("2001:0:4136:e378:8000:63bf:3fff:fdd2")
	b.Run("slice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = EmbeddedIPv4(a)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]netip.Addr, 0, MaxEmbedded)
		for b.Loop() {
			dst, _ = AppendEmbeddedIPv4(dst[:0], a)
		}
	})
}
