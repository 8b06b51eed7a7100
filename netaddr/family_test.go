package netaddr

import (
	"net/netip"
	"testing"
)

func TestFamily(t *testing.T) {
	tests := []struct {
		addr       string
		fam        Family
		str, label string
		other      Family
	}{
		{"192.0.2.1", IPv4, "IPv4", "ip4", IPv6},
		{"2001:db8::1", IPv6, "IPv6", "ip6", IPv4},
		{"::ffff:192.0.2.1", IPv6, "IPv6", "ip6", IPv4}, // arrives on an IPv6 socket
		{"", 0, "unknown", "unknown", 0},
	}
	for _, tt := range tests {
		var a netip.Addr
		if tt.addr != "" {
			a = netip.MustParseAddr(tt.addr)
		}
		f := FamilyOf(a)
		if f != tt.fam || f.String() != tt.str || f.Label() != tt.label || f.Other() != tt.other {
			t.Errorf("FamilyOf(%q) = %v (%s, %s, other %v); want %v (%s, %s, other %v)",
				tt.addr, f, f.String(), f.Label(), f.Other(), tt.fam, tt.str, tt.label, tt.other)
		}
	}
	if FamilyOf(netip.MustParseAddr("::ffff:192.0.2.1").Unmap()) != IPv4 {
		t.Error("FamilyOf(Unmap(::ffff:192.0.2.1)) is not IPv4")
	}
}
