package netaddr

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func dest(addr, src string) Destination {
	d := Destination{Addr: netip.MustParseAddr(addr)}
	if src != "" {
		d.Source = netip.MustParseAddr(src)
	}
	return d
}

// TestSortDestinationsRFC6724 runs the RFC 6724 §10.2 examples (those that
// do not need deprecated or home-address flags) plus the cases a softphone
// meets: an IPv6-only host, loopback, ULA against IPv4.
func TestSortDestinationsRFC6724(t *testing.T) {
	tests := []struct {
		name string
		in   []Destination // in DNS order
		want []string      // addresses, most preferred first
	}{
		{
			name: "RFC6724 rule 1: avoid unusable destinations (IPv6-only host, A record unreachable)",
			in:   []Destination{dest("192.0.2.10", ""), dest("2001:db8::10", "2001:db8::1")},
			want: []string{"2001:db8::10", "192.0.2.10"},
		},
		{
			name: "RFC6724 rule 1: IPv4-only host puts AAAA last",
			in:   []Destination{dest("2001:db8::10", ""), dest("192.0.2.10", "192.0.2.1")},
			want: []string{"192.0.2.10", "2001:db8::10"},
		},
		{
			name: "RFC6724 10.2 rule 2: prefer matching scope (global IPv6 over IPv4 from link-local)",
			in:   []Destination{dest("198.51.100.121", "169.254.13.78"), dest("2001:db8:1::1", "2001:db8:1::2")},
			want: []string{"2001:db8:1::1", "198.51.100.121"},
		},
		{
			name: "RFC6724 10.2 rule 2: prefer matching scope (IPv4 over IPv6 from fe80::)",
			in:   []Destination{dest("2001:db8:1::1", "fe80::1"), dest("198.51.100.121", "198.51.100.117")},
			want: []string{"198.51.100.121", "2001:db8:1::1"},
		},
		{
			name: "RFC6724 10.2 rule 6: prefer higher precedence (IPv6 40 over IPv4 35)",
			in:   []Destination{dest("10.1.2.3", "10.1.2.4"), dest("2001:db8:1::1", "2001:db8:1::2")},
			want: []string{"2001:db8:1::1", "10.1.2.3"},
		},
		{
			name: "RFC6724 10.2 rule 8: prefer smaller scope",
			in:   []Destination{dest("2001:db8:1::1", "2001:db8:1::2"), dest("fe80::1", "fe80::2")},
			want: []string{"fe80::1", "2001:db8:1::1"},
		},
		{
			name: "RFC6724 10.2 rule 9: use longest matching prefix",
			in:   []Destination{dest("2001:db8:3ffe::1", "2001:db8:3f44::2"), dest("2001:db8:1::1", "2001:db8:1::2")},
			want: []string{"2001:db8:1::1", "2001:db8:3ffe::1"},
		},
		{
			name: "RFC6724 10.2 rule 5: prefer matching label (6to4 source)",
			in:   []Destination{dest("2001:db8:1::1", "2002:c633:6401::2"), dest("2002:c633:6401::1", "2002:c633:6401::2")},
			want: []string{"2002:c633:6401::1", "2001:db8:1::1"},
		},
		{
			name: "RFC6724 10.2 rule 6: prefer higher precedence (native over 6to4, labels both match)",
			in:   []Destination{dest("2002:c633:6401::1", "2002:c633:6401::2"), dest("2001:db8:1::1", "2001:db8:1::2")},
			want: []string{"2001:db8:1::1", "2002:c633:6401::1"},
		},
		{
			name: "RFC6724 rule 6: loopback ::1 (50) over 127.0.0.1 (35)",
			in:   []Destination{dest("127.0.0.1", "127.0.0.1"), dest("::1", "::1")},
			want: []string{"::1", "127.0.0.1"},
		},
		{
			name: "RFC6724 rule 6: ULA (3) below IPv4 (35) in the default table",
			in:   []Destination{dest("fd00::10", "fd00::1"), dest("192.0.2.10", "192.0.2.1")},
			want: []string{"192.0.2.10", "fd00::10"},
		},
		{
			name: "RFC6724 rule 9 is IPv6-only: IPv4 keeps DNS order (golang/go#18518)",
			in:   []Destination{dest("198.51.100.7", "192.0.2.1"), dest("192.0.2.7", "192.0.2.1")},
			want: []string{"198.51.100.7", "192.0.2.7"},
		},
		{
			name: "RFC6724 rule 9 stops at /64: interface IDs do not reorder",
			in:   []Destination{dest("2001:db8:1::ffff", "2001:db8:1::1"), dest("2001:db8:1::2", "2001:db8:1::1")},
			want: []string{"2001:db8:1::ffff", "2001:db8:1::2"},
		},
		{
			name: "RFC6724 rule 10: otherwise leave the order unchanged",
			in:   []Destination{dest("2001:db8::b", "2001:db8::1"), dest("2001:db8::a", "2001:db8::1"), dest("192.0.2.2", ""), dest("192.0.2.1", "")},
			want: []string{"2001:db8::b", "2001:db8::a", "192.0.2.2", "192.0.2.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := append([]Destination(nil), tt.in...)
			SortDestinations(ds)
			for i, d := range ds {
				if d.Addr.String() != tt.want[i] {
					t.Fatalf("got %v, want %v", ds, tt.want)
				}
			}
		})
	}
}

func TestPolicyTableRFC6724(t *testing.T) {
	tests := []struct {
		addr       string
		precedence uint8
		label      uint8
		scope      Scope
	}{
		{"::1", 50, 0, ScopeLinkLocal},
		{"2001:db8::1", 40, 1, ScopeGlobal},
		{"192.0.2.1", 35, 4, ScopeGlobal},
		{"::ffff:192.0.2.1", 35, 4, ScopeGlobal},
		{"127.0.0.1", 35, 4, ScopeLinkLocal},
		{"169.254.1.1", 35, 4, ScopeLinkLocal},
		{"10.0.0.1", 35, 4, ScopeGlobal}, // RFC 6724 §3.2: private IPv4 is global scope
		{"2002:c000:201::1", 30, 2, ScopeGlobal},
		{"2001:0:4136:e378::1", 5, 5, ScopeGlobal}, // Teredo
		{"fd12:3456::1", 3, 13, ScopeGlobal},       // ULA is global scope (§3.1)
		{"::c000:201", 1, 3, ScopeGlobal},          // IPv4-compatible
		{"fec0::1", 1, 11, ScopeSiteLocal},
		{"3ffe::1", 1, 12, ScopeGlobal},
		{"fe80::1", 40, 1, ScopeLinkLocal},
		{"ff02::1", 40, 1, ScopeLinkLocal},
		{"ff05::1", 40, 1, ScopeSiteLocal},
		{"ff0e::1", 40, 1, ScopeGlobal},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if p, l, s := Precedence(a), Label(a), ScopeOf(a); p != tt.precedence || l != tt.label || s != tt.scope {
			t.Errorf("%s: precedence %d label %d scope %#x, want %d %d %#x", tt.addr, p, l, s, tt.precedence, tt.label, tt.scope)
		}
	}
	if Precedence(netip.Addr{}) != 0 || Label(netip.Addr{}) != 0xff {
		t.Error("zero Addr must have precedence 0 and a label nothing matches")
	}
}

// TestCompareDestinationsIsAnOrder checks antisymmetry on random pairs: a
// comparator that is not one makes the sort's result depend on input order.
func TestCompareDestinationsIsAnOrder(t *testing.T) {
	pool := []string{"::1", "127.0.0.1", "2001:db8::1", "2001:db8:1::2", "192.0.2.1", "fe80::1", "169.254.0.1",
		"2002:c633:6401::2", "2001::1", "fd00::1", "fec0::1", "::ffff:192.0.2.9", ""}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() netip.Addr {
		s := pool[r.IntN(len(pool))]
		if s == "" {
			return netip.Addr{}
		}
		return netip.MustParseAddr(s)
	}
	for range 5000 {
		a := Destination{Addr: pick(), Source: pick()}
		b := Destination{Addr: pick(), Source: pick()}
		if !a.Addr.IsValid() || !b.Addr.IsValid() {
			continue
		}
		if x, y := CompareDestinations(a, b), CompareDestinations(b, a); sign(x) != -sign(y) {
			t.Fatalf("Compare(%v,%v)=%d but Compare(%v,%v)=%d", a, b, x, b, a, y)
		}
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func BenchmarkSortDestinations(b *testing.B) {
	in := []Destination{dest("192.0.2.1", "192.0.2.9"), dest("2001:db8::1", "2001:db8::9"), dest("198.51.100.1", ""), dest("2001:db8:1::1", "2001:db8::9")}
	ds := make([]Destination, len(in))
	b.ReportAllocs()
	for b.Loop() {
		copy(ds, in)
		SortDestinations(ds)
	}
}
