package netaddr_test

import (
	"fmt"
	"net/netip"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// A relay's peer policy: tests allow the documentation range they use, the
// relay's own address is never a peer, and loopback stays denied however it
// is written.
func ExamplePeerPolicy_Check() {
	allow, err := netaddr.ParsePrefixes([]string{"192.0.2.0/24"})
	if err != nil {
		fmt.Println(err)
		return
	}
	p := netaddr.NewPeerPolicy(netaddr.PeerPolicyConfig{
		Allow: allow,
		Own:   []netip.Addr{netip.MustParseAddr("198.51.100.1")},
	})
	for _, s := range []string{
		"192.0.2.10",
		"64:ff9b::192.0.2.10",
		"::ffff:127.0.0.1",
		"2002:7f00:1::1",
		"2001:0:4136:e378:8000:63bf:80ff:fffe",
		"10.0.0.1",
		"198.51.100.1",
		"fe80::1",
	} {
		v := p.Check(netip.MustParseAddr(s))
		fmt.Printf("%-38s allowed=%-5v reason=%s addr=%s\n", s, v.Allowed, v.Reason, v.Addr)
	}
	// Output:
	// 192.0.2.10                             allowed=true  reason=allow-cidr addr=192.0.2.10
	// 64:ff9b::192.0.2.10                    allowed=true  reason=allow-cidr addr=192.0.2.10
	// ::ffff:127.0.0.1                       allowed=false reason=loopback addr=127.0.0.1
	// 2002:7f00:1::1                         allowed=false reason=loopback addr=127.0.0.1
	// 2001:0:4136:e378:8000:63bf:80ff:fffe   allowed=false reason=loopback addr=127.0.0.1
	// 10.0.0.1                               allowed=false reason=special-purpose addr=10.0.0.1
	// 198.51.100.1                           allowed=false reason=own-address addr=198.51.100.1
	// fe80::1                                allowed=false reason=special-purpose addr=fe80::1
}

func ExampleEmbeddedIPv4() {
	for _, s := range []string{
		"::ffff:192.0.2.33",
		"64:ff9b::192.0.2.33",
		"64:ff9b:1:c000:2:2100::",
		"2002:c000:221::1",
		"2001:0:4136:e378:8000:63bf:3fff:fdd2",
		"2001:db8::1",
	} {
		v4, form := netaddr.EmbeddedIPv4(netip.MustParseAddr(s))
		fmt.Println(s, form, v4)
	}
	// Output:
	// ::ffff:192.0.2.33 ipv4-mapped [192.0.2.33]
	// 64:ff9b::192.0.2.33 nat64 [192.0.2.33]
	// 64:ff9b:1:c000:2:2100:: nat64-local [192.0.2.33]
	// 2002:c000:221::1 6to4 [192.0.2.33]
	// 2001:0:4136:e378:8000:63bf:3fff:fdd2 teredo [65.54.227.120 192.0.2.45]
	// 2001:db8::1 none []
}

func ExampleLookup() {
	for _, s := range []string{"192.0.0.10", "100.64.1.1", "2001:db8::1", "8.8.8.8"} {
		r, ok := netaddr.Lookup(netip.MustParseAddr(s))
		if !ok {
			fmt.Println(s, "not special-purpose")
			continue
		}
		fmt.Printf("%s %s %q %s global=%v\n", s, r.Prefix, r.Name, r.RFC, r.Global)
	}
	// Output:
	// 192.0.0.10 192.0.0.10/32 "Traversal Using Relays around NAT Anycast" RFC 8155 global=true
	// 100.64.1.1 100.64.0.0/10 "Shared Address Space" RFC 6598 global=false
	// 2001:db8::1 2001:db8::/32 "Documentation" RFC 3849 global=false
	// 8.8.8.8 not special-purpose
}

func ExampleIsUsableHost() {
	for _, s := range []string{"192.168.1.20", "2001:db8::20", "fe80::1%eth0", "127.0.0.1"} {
		a := netip.MustParseAddr(s)
		fmt.Println(s, netaddr.IsUsableHost(a, false), netaddr.IsUsableHost(a, true))
	}
	// Output:
	// 192.168.1.20 true true
	// 2001:db8::20 true true
	// fe80::1%eth0 false true
	// 127.0.0.1 false false
}

func ExampleParsePrefixes() {
	p, err := netaddr.ParsePrefixes([]string{"192.0.2.0/24", "2001:db8::1"})
	fmt.Println(p, err)
	_, err = netaddr.ParsePrefixes([]string{"192.0.2.0/24", "192.0.2.300"})
	fmt.Println(err)
	// Output:
	// [192.0.2.0/24 2001:db8::1/128] <nil>
	// netaddr: entry 1 "192.0.2.300": invalid address or prefix: ParseAddr("192.0.2.300"): IPv4 field has value >255
}
