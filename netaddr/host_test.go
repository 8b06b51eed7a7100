package netaddr

import (
	"net/netip"
	"testing"
)

func TestIsUsableHost(t *testing.T) {
	tests := []struct {
		name      string
		addr      string
		linkLocal bool
		want      bool
	}{
		{"global IPv4", "8.8.8.8", false, true},
		{"RFC1918 host behind NAT is a usable host candidate", "192.168.1.10", false, true},
		{"RFC6598 CGNAT host", "100.64.1.2", false, true},
		{"RFC5737 TEST-NET-1 in a test namespace", "192.0.2.10", false, true},
		{"RFC3849 2001:db8:: in a test namespace", "2001:db8::10", false, true},
		{"global IPv6", "2a00:1450:4001::1", false, true},
		{"RFC4193 ULA", "fd00::10", false, true},
		{"RFC4291 IPv4-mapped global judged as IPv4", "::ffff:192.168.1.10", false, true},
		{"RFC3927 link-local IPv4 not asked", "169.254.1.1", false, false},
		{"RFC3927 link-local IPv4 asked", "169.254.1.1", true, true},
		{"RFC4291 link-local IPv6 not asked", "fe80::1", false, false},
		{"RFC4291 link-local IPv6 with zone asked", "fe80::1%eth0", true, true},
		{"RFC1122 loopback never", "127.0.0.1", true, false},
		{"RFC4291 loopback ::1 never", "::1", true, false},
		{"RFC4291 IPv4-mapped loopback never", "::ffff:127.0.0.1", true, false},
		{"RFC4291 unspecified never", "::", true, false},
		{"RFC1122 unspecified 0.0.0.0 never", "0.0.0.0", true, false},
		{"RFC791 this network 0.1.2.3 never", "0.1.2.3", true, false},
		{"RFC5771 multicast never", "239.1.2.3", true, false},
		{"RFC4291 multicast ff02::1 never", "ff02::1", true, false},
		{"RFC4291 link-local multicast ff02::fb never", "ff02::fb", true, false},
		{"RFC919 limited broadcast never", "255.255.255.255", true, false},
		{"RFC1112 reserved 240/4 never", "240.0.0.1", true, false},
		{"RFC4291 IPv4-compatible (outside 2000::/3) never", "::192.0.2.1", true, false},
		{"RFC6052 NAT64 prefix is not an interface address", "64:ff9b::808:808", true, false},
		{"RFC6666 discard-only never", "100::1", true, false},
		{"RFC3879 deprecated site-local never", "fec0::1", true, false},
		{"RFC3056 6to4 of a global IPv4", "2002:808:808::1", false, true},
		{"RFC3056 6to4 of loopback never", "2002:7f00:1::1", true, false},
		{"RFC4380 Teredo client loopback never", "2001:0:808:808:0:f227:80ff:fffe", true, false},
		{"zero Addr never", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			if got := IsUsableHost(a, tt.linkLocal); got != tt.want {
				t.Fatalf("IsUsableHost(%s, %v) = %v; want %v", tt.addr, tt.linkLocal, got, tt.want)
			}
		})
	}
}
