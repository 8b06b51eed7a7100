package gather

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/netaddr"
)

func addrs(s string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Fields(s) {
		out = append(out, netip.MustParseAddr(f))
	}
	return out
}

func TestInterleave(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"RFC8421 4: families alternate, IPv6 first", "192.0.2.1 198.51.100.1 2001:db8::1 2001:db8::2",
			"2001:db8::1 192.0.2.1 2001:db8::2 198.51.100.1"},
		{"RFC8421 4: one IPv4 is not starved by many IPv6", "2001:db8::1 2001:db8::2 2001:db8::3 192.0.2.1",
			"2001:db8::1 192.0.2.1 2001:db8::2 2001:db8::3"},
		{"RFC6724 2.1: IPv4 (35) before ULA (3)", "fd00::1 192.0.2.1", "192.0.2.1 fd00::1"},
		{"RFC6724 2.1: native IPv6 before 6to4 and ULA", "fd00::1 2002:c000:201::1 2001:db8::1 192.0.2.1",
			"2001:db8::1 192.0.2.1 2002:c000:201::1 fd00::1"},
		{"RFC6724 2.1: Teredo after IPv4", "2001:0:4136:e378::1 192.0.2.1", "192.0.2.1 2001:0:4136:e378::1"},
		{"IPv4 only", "192.0.2.1 198.51.100.1", "192.0.2.1 198.51.100.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := interleave(addrs(tc.in))
			if !slices.Equal(got, addrs(tc.want)) {
				t.Errorf("interleave(%s) = %v, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestCandidatePriority(t *testing.T) {
	cases := []struct {
		name      string
		typePref  uint32
		localPref uint32
		want      uint32
	}{
		{"RFC8445 5.1.2.1: best host", typePrefHost, 65535, 126<<24 | 65535<<8 | 255},
		{"relay type preference 0", typePrefRelay, 100, 100<<8 | 255},
		{"srflx", typePrefSrflx, 1, 100<<24 | 1<<8 | 255},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := candidatePriority(tc.typePref, tc.localPref, rtpComponent); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestServerLocalPrefUnique: relayed and reflexive candidates of two
// servers, both families and three transports never share a preference,
// and within one transport IPv6 comes just before IPv4.
func TestServerLocalPrefUnique(t *testing.T) {
	seen := map[uint32]string{}
	for _, proto := range []string{"udp", "tcp", "tls"} {
		for idx := range 3 {
			p6 := serverLocalPref(proto, netaddr.IPv6, idx)
			p4 := serverLocalPref(proto, netaddr.IPv4, idx)
			if p6 != p4+1 {
				t.Errorf("%s server %d: IPv6 %d, IPv4 %d: want adjacent, IPv6 first", proto, idx, p6, p4)
			}
			for _, p := range []uint32{p6, p4} {
				if o, dup := seen[p]; dup {
					t.Errorf("local preference %d used twice (%s)", p, o)
				}
				seen[p] = proto
			}
		}
	}
	if serverLocalPref("tcp", netaddr.IPv6, 0) >= serverLocalPref("udp", netaddr.IPv4, 2) {
		t.Error("a TCP relay outranks a UDP one")
	}
}

func TestFoundation(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	srv := netip.MustParseAddr("198.51.100.7")
	if f1, f2 := foundation("host", a, netip.Addr{}, "udp"), foundation("host", a.WithZone("eth0"), netip.Addr{}, "udp"); f1 != f2 {
		t.Errorf("RFC8445 5.1.1.3: same type and base must share a foundation: %s, %s", f1, f2)
	}
	for _, other := range []string{
		foundation("host", b, netip.Addr{}, "udp"),
		foundation("srflx", a, srv, "udp"),
		foundation("relay", a, srv, "tcp"),
	} {
		if other == foundation("relay", a, srv, "udp") {
			t.Error("different type/base/transport share a foundation")
		}
	}
}

func TestParseIfInet6(t *testing.T) {
	const procText = `20010db8000000000000000000000001 02 40 00 80     eth0
20010db8000000000000000000000002 02 40 00 01     eth0
20010db8000000000000000000000003 02 40 00 20     eth0
20010db8000000000000000000000004 02 40 00 c0     eth0
fe800000000000000000000000000001 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
garbage line
`
	got := parseIfInet6(strings.NewReader(procText))
	cases := []struct {
		addr    string
		skipped bool
		why     string
	}{
		{"2001:db8::1", false, "permanent"},
		{"2001:db8::2", true, "IFA_F_TEMPORARY"},
		{"2001:db8::3", true, "IFA_F_DEPRECATED"},
		{"2001:db8::4", true, "IFA_F_TENTATIVE"},
		{"fe80::1", false, "permanent link-local"},
	}
	for _, tc := range cases {
		if got[netip.MustParseAddr(tc.addr)] != tc.skipped {
			t.Errorf("%s (%s): skipped=%t, want %t", tc.addr, tc.why, !tc.skipped, tc.skipped)
		}
	}
}

// TestHostAddrsFromInterfaces checks enumeration without sending anything:
// no loopback, nothing link-local unless asked, only the asked families.
func TestHostAddrsFromInterfaces(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		fams []netaddr.Family
	}{
		{"both families", Config{}, []netaddr.Family{netaddr.IPv6, netaddr.IPv4}},
		{"IPv6 only, with link-local", Config{IncludeLinkLocal: true}, []netaddr.Family{netaddr.IPv6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostAddrs(&tc.cfg, tc.fams)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range got {
				if a.IsLoopback() || (a.IsLinkLocalUnicast() && !tc.cfg.IncludeLinkLocal) || !slices.Contains(tc.fams, netaddr.FamilyOf(a)) {
					t.Errorf("unexpected host address %s", a)
				}
			}
		})
	}
	got, err := hostAddrs(&Config{HostAddrs: addrs("127.0.0.1 ::1 ::ffff:127.0.0.1")}, []netaddr.Family{netaddr.IPv4})
	if err != nil || !slices.Equal(got, addrs("127.0.0.1")) {
		t.Errorf("explicit HostAddrs filtered to IPv4 = %v, %v; want [127.0.0.1]", got, err)
	}
}
