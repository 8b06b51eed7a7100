package sipaddr

import (
	"net"
	"net/netip"
	"testing"
)

func TestSipgoBoundary(t *testing.T) {
	for _, tc := range []struct {
		addr, uriHost, viaHost, dest string
	}{
		{"2001:db8::9:1", "[2001:db8::9:1]", "2001:db8::9:1", "[2001:db8::9:1]:5060"},
		{"::ffff:192.0.2.1", "[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]:5060"},
		{"fe80::1%eth0", "[fe80::1%25eth0]", "[fe80::1%25eth0]", "[fe80::1%eth0]:5060"},
		{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1:5060"},
	} {
		h := HostFromAddr(netip.MustParseAddr(tc.addr))
		if got := ToSipgoURIHost(h); got != tc.uriHost {
			t.Errorf("ToSipgoURIHost(%s) = %q, want %q", tc.addr, got, tc.uriHost)
		}
		if got := ToSipgoViaHost(h); got != tc.viaHost {
			t.Errorf("ToSipgoViaHost(%s) = %q, want %q", tc.addr, got, tc.viaHost)
		}
		dest := ToSipgoDestination(HostPort{Host: h}, 5060)
		if dest != tc.dest {
			t.Errorf("ToSipgoDestination(%s) = %q, want %q", tc.addr, dest, tc.dest)
		}
		// sipgo's ParseAddr is net.SplitHostPort: the destination must split.
		if host, _, err := net.SplitHostPort(dest); err != nil || netip.MustParseAddr(host) != h.Addr() {
			t.Errorf("net.SplitHostPort(%q) = %q, %v", dest, host, err)
		}
		for _, s := range []string{tc.uriHost, tc.viaHost} {
			back, err := FromSipgoViaHost(s)
			if err != nil || !back.Equal(h) {
				t.Errorf("FromSipgoViaHost(%q) = %v, %v", s, back, err)
			}
		}
		if back, err := FromSipgoURIHost(tc.uriHost); err != nil || !back.Equal(h) {
			t.Errorf("FromSipgoURIHost(%q) = %v, %v", tc.uriHost, back, err)
		}
	}
	// The bare form sipgo builds from a Via does not split (sipgo request.go
	// sourceVia); this is the failure ToSipgoDestination avoids.
	if _, _, err := net.SplitHostPort("2001:db8::9:1:5060"); err == nil {
		t.Error("bare IPv6 host:port split; the sipgo claim in sipgo.go is wrong")
	}
	// Why sipgo writes mapped and zoned addresses bare (utils.go uriIP).
	if net.ParseIP("::ffff:192.0.2.1").To4() == nil || net.ParseIP("fe80::1%eth0") != nil {
		t.Error("net.ParseIP no longer behaves as the sipgo.go comment says")
	}
	// What sipgo does not check inside brackets, we do.
	if _, err := FromSipgoURIHost("[zzzz]"); err == nil {
		t.Error("FromSipgoURIHost accepted [zzzz]")
	}
	if _, err := FromSipgoViaHost("zz::zz"); err == nil {
		t.Error("FromSipgoViaHost accepted zz::zz")
	}
	if got := ToSipgoDestination(HostPort{Host: Host{name: "example.com"}, Port: 5070}, 5060); got != "example.com:5070" {
		t.Errorf("name destination = %q", got)
	}
}
