package netaddr

import (
	"net/netip"
	"testing"
)

// fuzzPolicy builds one of 32 policies from mode bits. Bit 4 explicitly
// allows the carrier prefixes (6to4, both NAT64 prefixes, IPv4-compatible,
// Teredo): even then a denied embedded IPv4 must keep the address denied.
func fuzzPolicy(t testing.TB, mode uint8) *PeerPolicy {
	var c PeerPolicyConfig
	c.AllowLoopback = mode&1 != 0
	if mode&2 != 0 {
		c.Allow = append(c.Allow, mustPrefixes(t, "192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32")...)
	}
	if mode&4 != 0 {
		c.Deny = append(c.Deny, mustPrefixes(t, "8.8.4.0/24", "192.0.2.128/25", "127.0.0.2")...)
	}
	if mode&8 != 0 {
		c.Own = []netip.Addr{netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("2001:4860::1")}
	}
	if mode&16 != 0 {
		c.Allow = append(c.Allow, mustPrefixes(t, "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48", "::/96", "2001::/32")...)
	}
	return NewPeerPolicy(c)
}

// FuzzCheck asserts that Check never panics, always gives a known reason that
// agrees with Allowed, is invariant under IPv4 mapping, and that an IPv4
// address it denies stays denied in every embedded form (CVE-2020-26262).
func FuzzCheck(f *testing.F) {
	for _, s := range []struct {
		addr string
		v4   string
	}{
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"2002:7f00:1::1", "10.0.0.1"},
		{"64:ff9b::a00:1", "100.64.0.1"},
		{"2001:0:808:808:0:f227:80ff:fffe", "169.254.169.254"},
		{"64:ff9b:1:7f00:0:100::", "192.0.2.200"},
		{"::127.0.0.1", "8.8.4.4"},
		{"2001:4860::1", "1.2.3.4"},
		{"fe80::1", "0.0.0.0"},
	} {
		a := netip.MustParseAddr(s.addr).As16()
		v := netip.MustParseAddr(s.v4).As4()
		f.Add(a[:], uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), uint32(0x08080808), uint8(0))
	}
	f.Add([]byte{1, 2, 3, 4}, uint32(0x7f000001), uint32(0x01020304), uint8(0x1f))
	f.Add([]byte{}, uint32(0), uint32(0), uint8(6))

	policies := make([]*PeerPolicy, 32)
	for m := range policies {
		policies[m] = fuzzPolicy(f, uint8(m))
	}

	f.Fuzz(func(t *testing.T, raw []byte, v4bits, serverBits uint32, mode uint8) {
		p := policies[mode%32]

		// Any address, including the zero Addr and zoned ones.
		var a netip.Addr
		switch {
		case len(raw) >= 16:
			a = netip.AddrFrom16([16]byte(raw[:16]))
			if len(raw) > 16 && raw[16]&1 == 1 {
				a = a.WithZone("eth0")
			}
		case len(raw) >= 4:
			a = netip.AddrFrom4([4]byte(raw[:4]))
		}
		v := p.Check(a)
		allowedReason, known := allReasons[v.Reason]
		if !known || allowedReason != v.Allowed {
			t.Fatalf("Check(%s) = %+v: unknown reason or reason disagrees with Allowed", a, v)
		}
		if v.Reason != ReasonInvalid && !v.Addr.IsValid() {
			t.Fatalf("Check(%s) = %+v: no deciding address", a, v)
		}
		if a.Is4() {
			if m := p.Check(netip.AddrFrom16(a.As16())); m != v {
				t.Fatalf("Check(%s) = %+v but Check(mapped) = %+v", a, v, m)
			}
		}
		// Check is the policy; IsGlobal is the registry. Without explicit
		// rules, a global address is allowed unless it is the relay's own.
		if mode&0x1e == 0 && IsGlobal(a) && !v.Allowed {
			t.Fatalf("Check(%s) = %+v but IsGlobal is true and no rule applies", a, v)
		}

		v4 := netip.AddrFrom4([4]byte{byte(v4bits >> 24), byte(v4bits >> 16), byte(v4bits >> 8), byte(v4bits)})
		server := netip.AddrFrom4([4]byte{byte(serverBits >> 24), byte(serverBits >> 16), byte(serverBits >> 8), byte(serverBits)})
		if p.Check(v4).Allowed {
			return
		}
		for _, e := range embeddings(v4, server) {
			if got := p.Check(e.addr); got.Allowed {
				t.Fatalf("policy mode %#x denies %s but allows its %s form %s: %+v", mode%32, v4, e.form, e.addr, got)
			}
		}
	})
}
