package relay

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// The relay's own addresses, denied as peers: every host address is one,
// whichever listen addresses are configured, so relay_ips or a specific
// listener naming one address does not open the host's other (global)
// addresses to peers.
func TestOwnAddresses(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	relays := []relayIP{{bind: a("10.0.0.5"), advertise: a("203.0.113.5")}}
	host := []netip.Addr{a("127.0.0.1"), a("::1"), a("10.0.0.5"), a("198.51.100.9"), a("2001:db8::9")}
	cases := []struct {
		name    string
		listen  []netip.AddrPort
		want    []netip.Addr
		notWant []netip.Addr
	}{
		{"wildcard listener: every host address but loopback",
			[]netip.AddrPort{ap("0.0.0.0:3478"), ap("[::]:3478")},
			[]netip.Addr{a("10.0.0.5"), a("203.0.113.5"), a("198.51.100.9"), a("2001:db8::9")},
			[]netip.Addr{a("127.0.0.1"), a("::1")}},
		{"specific listener: still every host address but loopback",
			[]netip.AddrPort{ap("192.0.2.1:3478")},
			[]netip.Addr{a("10.0.0.5"), a("203.0.113.5"), a("192.0.2.1"), a("198.51.100.9"), a("2001:db8::9")},
			[]netip.Addr{a("127.0.0.1"), a("::1")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			own := ownAddresses(tc.listen, relays, host)
			for _, w := range tc.want {
				if !slices.Contains(own, w) {
					t.Errorf("%v missing from own addresses %v", w, own)
				}
			}
			for _, w := range tc.notWant {
				if slices.Contains(own, w) {
					t.Errorf("%v in own addresses %v", w, own)
				}
			}
		})
	}

	// And the policy built from them denies a host address that relay_ips
	// did not name as the relay's own (own-address outranks the
	// special-purpose rule, so the reason shows which rule decided).
	pol := netaddr.NewPeerPolicy(netaddr.PeerPolicyConfig{
		Own: ownAddresses([]netip.AddrPort{ap("0.0.0.0:3478")}, relays, host),
	})
	for _, h := range []string{"198.51.100.9", "2001:db8::9", "::ffff:198.51.100.9"} {
		if v := pol.Check(a(h)); v.Allowed || v.Reason != netaddr.ReasonOwnAddress {
			t.Errorf("host address %s as a peer: %+v, want denied as %s", h, v, netaddr.ReasonOwnAddress)
		}
	}
}
