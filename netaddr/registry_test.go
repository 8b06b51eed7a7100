package netaddr

import (
	"net/netip"
	"testing"
)

func TestLookupMostSpecificWins(t *testing.T) {
	tests := []struct {
		name   string
		addr   string
		prefix string // "" = no entry
		global bool
	}{
		{"RFC1122 0.0.0.0 is 'this host' /32, not /8", "0.0.0.0", "0.0.0.0/32", false},
		{"RFC791 0.0.0.1 is 'this network' /8", "0.0.0.1", "0.0.0.0/8", false},
		{"RFC7335 192.0.0.5 is the service continuity /29", "192.0.0.5", "192.0.0.0/29", false},
		{"RFC7600 192.0.0.8 dummy /32", "192.0.0.8", "192.0.0.8/32", false},
		{"RFC7723 192.0.0.9 PCP anycast /32 is global inside a non-global /24", "192.0.0.9", "192.0.0.9/32", true},
		{"RFC8155 192.0.0.10 TURN anycast /32 is global", "192.0.0.10", "192.0.0.10/32", true},
		{"RFC8880 192.0.0.171 NAT64 discovery", "192.0.0.171", "192.0.0.171/32", false},
		{"RFC6890 192.0.0.100 falls back to the /24", "192.0.0.100", "192.0.0.0/24", false},
		{"RFC919 255.255.255.255 limited broadcast /32 within 240/4", "255.255.255.255", "255.255.255.255/32", false},
		{"RFC1112 255.255.255.254 is reserved 240/4", "255.255.255.254", "240.0.0.0/4", false},
		{"global 8.8.8.8 has no entry", "8.8.8.8", "", false},
		{"RFC4291 ::ffff:127.0.0.1 finds the IPv4-mapped entry", "::ffff:127.0.0.1", "::ffff:0:0/96", false},
		{"RFC4380 2001::1 is Teredo /32 inside IETF /23", "2001::1", "2001::/32", true},
		{"RFC2928 2001:1::5 is the IETF /23", "2001:1::5", "2001::/23", false},
		{"RFC8155 2001:1::2 TURN anycast /128", "2001:1::2", "2001:1::2/128", true},
		{"RFC9665 2001:1::3 DNS-SD SRP anycast /128", "2001:1::3", "2001:1::3/128", true},
		{"RFC7535 2001:4:112::1 AS112-v6", "2001:4:112::1", "2001:4:112::/48", true},
		{"RFC9374 2001:30::1 DETs", "2001:30::1", "2001:30::/28", true},
		{"RFC2928 2001:1ff::1 is still the /23", "2001:1ff::1", "2001::/23", false},
		{"2001:200::1 is outside the /23", "2001:200::1", "", false},
		{"RFC8215 64:ff9b:1::1 local-use NAT64", "64:ff9b:1::1", "64:ff9b:1::/48", false},
		{"RFC6052 64:ff9b::1.2.3.4 well-known NAT64 is global", "64:ff9b::102:304", "64:ff9b::/96", true},
		{"RFC4291 fe80::1%eth0 zone ignored", "fe80::1%eth0", "fe80::/10", false},
		{"RFC4291 ff02::1 multicast (address space registry)", "ff02::1", "ff00::/8", false},
		{"RFC5771 224.0.0.251 multicast (address space registry)", "224.0.0.251", "224.0.0.0/4", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := Lookup(netip.MustParseAddr(tt.addr))
			if tt.prefix == "" {
				if ok {
					t.Fatalf("Lookup(%s) = %+v; want no entry", tt.addr, r)
				}
				return
			}
			if !ok || r.Prefix != netip.MustParsePrefix(tt.prefix) || r.Global != tt.global {
				t.Fatalf("Lookup(%s) = %+v, %v; want %s global=%v", tt.addr, r, ok, tt.prefix, tt.global)
			}
		})
	}
	if _, ok := Lookup(netip.Addr{}); ok {
		t.Error("Lookup(zero Addr) found an entry")
	}
}

func TestRegistryTables(t *testing.T) {
	all := SpecialRanges()
	if len(all) != len(ipv4Special)+len(ipv6Special) {
		t.Fatalf("SpecialRanges() has %d entries, want %d", len(all), len(ipv4Special)+len(ipv6Special))
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range all {
		if r.Prefix != r.Prefix.Masked() {
			t.Errorf("%s is not canonical (host bits set)", r.Prefix)
		}
		if seen[r.Prefix] {
			t.Errorf("%s listed twice", r.Prefix)
		}
		seen[r.Prefix] = true
		if r.Name == "" || r.RFC == "" {
			t.Errorf("%s lacks a name or RFC", r.Prefix)
		}
		// Every entry must be found by its own first address.
		got, ok := Lookup(r.Prefix.Addr())
		if !ok || got.Prefix.Bits() < r.Prefix.Bits() {
			t.Errorf("Lookup(%s) = %v, %v; want %s or more specific", r.Prefix.Addr(), got.Prefix, ok, r.Prefix)
		}
	}
	all[0].Name = "changed"
	if SpecialRanges()[0].Name == "changed" {
		t.Error("SpecialRanges returns the table itself, not a copy")
	}
}

func TestIsGlobal(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want bool
	}{
		{"global 8.8.8.8", "8.8.8.8", true},
		{"global 2001:4860:4860::8888", "2001:4860:4860::8888", true},
		{"RFC1918 10.0.0.1", "10.0.0.1", false},
		{"RFC6598 100.64.0.1", "100.64.0.1", false},
		{"RFC4291 IPv4-mapped global ::ffff:8.8.8.8 is unmapped first", "::ffff:8.8.8.8", true},
		{"RFC4291 IPv4-mapped loopback", "::ffff:127.0.0.1", false},
		{"RFC4291 IPv4-compatible is reserved even with a global IPv4", "::8.8.8.8", false},
		{"RFC6052 NAT64 of global", "64:ff9b::808:808", true},
		{"RFC6052 NAT64 of RFC1918", "64:ff9b::a00:1", false},
		{"RFC8215 local-use NAT64 of global", "64:ff9b:1:808:8:800::", false},
		{"RFC3056 6to4 of global", "2002:808:808::1", true},
		{"RFC3056 6to4 of CGNAT", "2002:6440:1::1", false},
		{"RFC4380 Teredo global server and client", "2001:0:808:808:0:f227:f7f7:fbfb", true},
		{"RFC4380 Teredo client 127.0.0.1", "2001:0:808:808:0:f227:80ff:fffe", false},
		{"RFC4380 Teredo server 10.0.0.1", "2001:0:a00:1:0:f227:f7f7:fbfb", false},
		{"RFC7723 PCP anycast 192.0.0.9", "192.0.0.9", true},
		{"RFC4291 reserved 4000::1", "4000::1", false},
		{"RFC4193 ULA", "fd12:3456::1", false},
		{"zero Addr", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			if got := IsGlobal(a); got != tt.want {
				t.Fatalf("IsGlobal(%s) = %v; want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// refLookup is the obvious longest-prefix match with netip.Prefix.Contains.
func refLookup(a netip.Addr) (SpecialRange, bool) {
	var best SpecialRange
	found := false
	for _, r := range SpecialRanges() {
		if r.Prefix.Contains(a.WithZone("")) && (!found || r.Prefix.Bits() > best.Prefix.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}

// TestLookupMatchesReference checks the integer-mask lookup against
// refLookup at both edges of every entry and just outside them.
func TestLookupMatchesReference(t *testing.T) {
	var probes []netip.Addr
	for _, r := range SpecialRanges() {
		first := r.Prefix.Addr()
		last := lastAddr(r.Prefix)
		probes = append(probes, first, last, first.Prev(), last.Next(), first.Next(), last.Prev())
	}
	for _, a := range probes {
		if !a.IsValid() {
			continue
		}
		got, gok := Lookup(a)
		want, wok := refLookup(a)
		if gok != wok || got != want {
			t.Errorf("Lookup(%s) = %v, %v; reference %v, %v", a, got.Prefix, gok, want.Prefix, wok)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
