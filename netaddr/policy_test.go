package netaddr

import (
	"net/netip"
	"sync"
	"testing"
)

func mustPrefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type checkCase struct {
	name   string
	addr   string
	allow  bool
	reason string
	by     string       // Verdict.Addr; "" means the unmapped checked address
	form   EmbeddedForm // Verdict.Form
}

func runCheckCases(t *testing.T, p *PeerPolicy, tests []checkCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			v := p.Check(a)
			by := a.Unmap().WithZone("")
			if tt.by != "" {
				by = netip.MustParseAddr(tt.by)
			}
			want := Verdict{Allowed: tt.allow, Reason: tt.reason, Addr: by, Form: tt.form}
			if v != want {
				t.Fatalf("Check(%s) = %+v; want %+v", tt.addr, v, want)
			}
		})
	}
}

// TestCheckDefaultPolicy: the secure default (no options) against every
// embedded-IPv4 bypass form of the CVE-2020-26262 class.
func TestCheckDefaultPolicy(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{})
	runCheckCases(t, p, []checkCase{
		// Loopback in every form.
		{"RFC1122 loopback 127.0.0.1 -> deny", "127.0.0.1", false, ReasonLoopback, "", FormNone},
		{"RFC1122 loopback 127.255.255.254 -> deny", "127.255.255.254", false, ReasonLoopback, "", FormNone},
		{"RFC4291 loopback ::1 -> deny", "::1", false, ReasonLoopback, "", FormNone},
		{"RFC4291 IPv4-mapped ::ffff:127.0.0.1 embeds loopback -> deny", "::ffff:127.0.0.1", false, ReasonLoopback, "127.0.0.1", FormNone},
		{"RFC4291 IPv4-compatible ::127.0.0.1 embeds loopback -> deny", "::127.0.0.1", false, ReasonLoopback, "127.0.0.1", FormIPv4Compatible},
		{"RFC6052 NAT64 64:ff9b::/96 embeds loopback -> deny", "64:ff9b::7f00:1", false, ReasonLoopback, "127.0.0.1", FormNAT64},
		{"RFC8215 NAT64 64:ff9b:1::/48 embeds loopback -> deny", "64:ff9b:1:7f00:0:100::", false, ReasonLoopback, "127.0.0.1", FormNAT64Local},
		{"RFC3056 6to4 2002::/16 embeds loopback -> deny", "2002:7f00:1::1", false, ReasonLoopback, "127.0.0.1", Form6to4},
		{"RFC4380 Teredo client 127.0.0.1 -> deny", "2001:0:808:808:0:f227:80ff:fffe", false, ReasonLoopback, "127.0.0.1", FormTeredo},
		{"RFC4380 Teredo server 127.0.0.1 -> deny", "2001:0:7f00:1:0:f227:f7f7:f7f7", false, ReasonLoopback, "127.0.0.1", FormTeredo},
		// RFC 1918 private-use.
		{"RFC1918 10.0.0.1 -> deny", "10.0.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC1918 172.16.0.1 -> deny", "172.16.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC1918 172.31.255.255 -> deny", "172.31.255.255", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC1918 192.168.1.1 -> deny", "192.168.1.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC1918 IPv4-mapped ::ffff:10.0.0.1 -> deny", "::ffff:10.0.0.1", false, ReasonSpecialPurpose, "10.0.0.1", FormNone},
		{"RFC1918 IPv4-compatible ::192.168.1.1 -> deny", "::192.168.1.1", false, ReasonSpecialPurpose, "192.168.1.1", FormIPv4Compatible},
		{"RFC1918 NAT64 64:ff9b::a00:1 -> deny", "64:ff9b::a00:1", false, ReasonSpecialPurpose, "10.0.0.1", FormNAT64},
		{"RFC1918 NAT64 local 64:ff9b:1:c0a8:1:100:: -> deny", "64:ff9b:1:c0a8:1:100::", false, ReasonSpecialPurpose, "192.168.1.1", FormNAT64Local},
		{"RFC1918 6to4 2002:ac10:1::1 -> deny", "2002:ac10:1::1", false, ReasonSpecialPurpose, "172.16.0.1", Form6to4},
		{"RFC1918 Teredo client 192.168.1.1 -> deny", "2001:0:808:808:0:f227:3f57:fefe", false, ReasonSpecialPurpose, "192.168.1.1", FormTeredo},
		// RFC 6598 CGNAT.
		{"RFC6598 CGNAT 100.64.0.1 -> deny", "100.64.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC6598 CGNAT 100.127.255.254 -> deny", "100.127.255.254", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC6598 CGNAT IPv4-mapped -> deny", "::ffff:100.64.0.1", false, ReasonSpecialPurpose, "100.64.0.1", FormNone},
		{"RFC6598 CGNAT NAT64 -> deny", "64:ff9b::6440:1", false, ReasonSpecialPurpose, "100.64.0.1", FormNAT64},
		{"RFC6598 CGNAT 6to4 -> deny", "2002:6440:1::1", false, ReasonSpecialPurpose, "100.64.0.1", Form6to4},
		{"RFC6598 CGNAT Teredo client -> deny", "2001:0:808:808:0:f227:9bbf:fffe", false, ReasonSpecialPurpose, "100.64.0.1", FormTeredo},
		{"RFC6598 100.128.0.1 is just outside -> allow", "100.128.0.1", true, ReasonAllowed, "", FormNone},
		// Link-local.
		{"RFC3927 link-local 169.254.1.1 -> deny", "169.254.1.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC3927 link-local IPv4-mapped -> deny", "::ffff:169.254.169.254", false, ReasonSpecialPurpose, "169.254.169.254", FormNone},
		{"RFC3927 link-local NAT64 -> deny", "64:ff9b::a9fe:a9fe", false, ReasonSpecialPurpose, "169.254.169.254", FormNAT64},
		{"RFC3927 link-local 6to4 -> deny", "2002:a9fe:a9fe::1", false, ReasonSpecialPurpose, "169.254.169.254", Form6to4},
		{"RFC3927 link-local Teredo client -> deny", "2001:0:808:808:0:f227:5601:5601", false, ReasonSpecialPurpose, "169.254.169.254", FormTeredo},
		{"RFC4291 link-local fe80::1 -> deny", "fe80::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4291 link-local fe80::1%eth0 -> deny", "fe80::1%eth0", false, ReasonSpecialPurpose, "", FormNone},
		// Other special-purpose blocks.
		{"RFC791 this network 0.0.0.0 -> deny", "0.0.0.0", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC791 this network 0.1.2.3 -> deny", "0.1.2.3", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4291 unspecified :: -> deny", "::", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5771 multicast 224.0.0.1 -> deny", "224.0.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5771 multicast 239.255.255.250 -> deny", "239.255.255.250", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4291 multicast ff02::1 -> deny", "ff02::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4291 multicast ff0e::1 -> deny", "ff0e::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC919 limited broadcast 255.255.255.255 -> deny", "255.255.255.255", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC1112 reserved 240.0.0.1 -> deny", "240.0.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5737 TEST-NET-1 192.0.2.1 -> deny", "192.0.2.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5737 TEST-NET-2 198.51.100.1 -> deny", "198.51.100.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5737 TEST-NET-3 203.0.113.1 -> deny", "203.0.113.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC2544 benchmarking 198.19.255.255 -> deny", "198.19.255.255", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC2544 198.20.0.1 is just outside -> allow", "198.20.0.1", true, ReasonAllowed, "", FormNone},
		{"RFC6890 IETF protocol assignments 192.0.0.1 -> deny", "192.0.0.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC7600 dummy 192.0.0.8 -> deny", "192.0.0.8", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC7723 PCP anycast 192.0.0.9 is global -> allow", "192.0.0.9", true, ReasonAllowed, "", FormNone},
		{"RFC8155 TURN anycast 192.0.0.10 is global -> allow", "192.0.0.10", true, ReasonAllowed, "", FormNone},
		{"RFC7526 deprecated 6to4 relay 192.88.99.1 -> deny", "192.88.99.1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC7535 AS112-v4 192.31.196.1 is global -> allow", "192.31.196.1", true, ReasonAllowed, "", FormNone},
		{"RFC4193 ULA fd00::1 -> deny", "fd00::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4193 ULA fc00::1 -> deny", "fc00::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC3849 documentation 2001:db8::1 -> deny", "2001:db8::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC9637 documentation 3fff::1 -> deny", "3fff::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC6666 discard-only 100::1 -> deny", "100::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC9780 dummy prefix 100:0:0:1::1 -> deny", "100:0:0:1::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC9602 SRv6 SIDs 5f00::1 -> deny", "5f00::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC5180 benchmarking 2001:2::1 -> deny", "2001:2::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC4843 deprecated ORCHID 2001:10::1 -> deny", "2001:10::1", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC2928 IETF protocol assignments 2001:1::5 -> deny", "2001:1::5", false, ReasonSpecialPurpose, "", FormNone},
		{"RFC8155 TURN anycast 2001:1::2 is global -> allow", "2001:1::2", true, ReasonAllowed, "", FormNone},
		{"RFC7450 AMT 2001:3::1 is global -> allow", "2001:3::1", true, ReasonAllowed, "", FormNone},
		{"RFC7343 ORCHIDv2 2001:20::1 is global -> allow", "2001:20::1", true, ReasonAllowed, "", FormNone},
		{"RFC7534 AS112 2620:4f:8000::1 is global -> allow", "2620:4f:8000::1", true, ReasonAllowed, "", FormNone},
		{"RFC4291 reserved 4000::1 (outside 2000::/3) -> deny", "4000::1", false, ReasonReserved, "", FormNone},
		{"RFC4291 reserved site-local fec0::1 -> deny", "fec0::1", false, ReasonReserved, "", FormNone},
		// Global addresses pass in every form.
		{"global 8.8.8.8 -> allow", "8.8.8.8", true, ReasonAllowed, "", FormNone},
		{"global IPv4-mapped ::ffff:8.8.8.8 -> allow", "::ffff:8.8.8.8", true, ReasonAllowed, "8.8.8.8", FormNone},
		{"global 2001:4860:4860::8888 -> allow", "2001:4860:4860::8888", true, ReasonAllowed, "", FormNone},
		{"RFC6052 NAT64 of global 64:ff9b::808:808 -> allow", "64:ff9b::808:808", true, ReasonAllowed, "", FormNone},
		{"RFC3056 6to4 of global 2002:808:808::1 -> allow", "2002:808:808::1", true, ReasonAllowed, "", FormNone},
		{"RFC4380 Teredo global server and client -> allow", "2001:0:808:808:0:f227:f7f7:fbfb", true, ReasonAllowed, "", FormNone},
		// Deprecated or local-only carriers stay denied even with a global IPv4.
		{"RFC4291 IPv4-compatible ::8.8.8.8 is reserved -> deny", "::8.8.8.8", false, ReasonReserved, "", FormNone},
		{"RFC8215 local-use NAT64 of global is not global -> deny", "64:ff9b:1:808:8:800::", false, ReasonSpecialPurpose, "", FormNone},
	})
}

func TestCheckAllowLoopback(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{AllowLoopback: true, Own: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}})
	runCheckCases(t, p, []checkCase{
		{"allow loopback 127.0.0.1 even if own -> allow", "127.0.0.1", true, ReasonAllowLoopback, "", FormNone},
		{"allow loopback ::1 even if own -> allow", "::1", true, ReasonAllowLoopback, "", FormNone},
		{"allow loopback ::ffff:127.0.0.2 -> allow", "::ffff:127.0.0.2", true, ReasonAllowLoopback, "127.0.0.2", FormNone},
		{"allow loopback 6to4 2002:7f00:1::1 -> allow", "2002:7f00:1::1", true, ReasonAllowLoopback, "127.0.0.1", Form6to4},
		{"allow loopback does not allow ::127.0.0.1 (reserved carrier) -> deny", "::127.0.0.1", false, ReasonReserved, "", FormNone},
		{"allow loopback does not allow RFC1918 10.0.0.1 -> deny", "10.0.0.1", false, ReasonSpecialPurpose, "", FormNone},
	})
}

func TestCheckOwnAddress(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{Own: []netip.Addr{
		netip.MustParseAddr("1.2.3.4"),
		netip.MustParseAddr("::ffff:5.6.7.8"), // stored unmapped
		netip.MustParseAddr("2001:4860::1"),
		netip.MustParseAddr("127.0.0.1"),
	}})
	runCheckCases(t, p, []checkCase{
		{"own 1.2.3.4 -> deny", "1.2.3.4", false, ReasonOwnAddress, "", FormNone},
		{"own IPv4-mapped ::ffff:1.2.3.4 -> deny", "::ffff:1.2.3.4", false, ReasonOwnAddress, "1.2.3.4", FormNone},
		{"own given mapped, checked as 5.6.7.8 -> deny", "5.6.7.8", false, ReasonOwnAddress, "", FormNone},
		{"own NAT64 64:ff9b::102:304 -> deny", "64:ff9b::102:304", false, ReasonOwnAddress, "1.2.3.4", FormNAT64},
		{"own 6to4 2002:102:304::1 -> deny", "2002:102:304::1", false, ReasonOwnAddress, "1.2.3.4", Form6to4},
		{"own Teredo server 1.2.3.4 -> deny", "2001:0:102:304:0:f227:f7f7:f7f7", false, ReasonOwnAddress, "1.2.3.4", FormTeredo},
		{"own IPv6 2001:4860::1 -> deny", "2001:4860::1", false, ReasonOwnAddress, "", FormNone},
		{"own loopback reported as own-address -> deny", "127.0.0.1", false, ReasonOwnAddress, "", FormNone},
		{"neighbour 1.2.3.5 -> allow", "1.2.3.5", true, ReasonAllowed, "", FormNone},
	})
}

func TestCheckExplicitRules(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{
		Allow: mustPrefixes(t, "192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32", "1.2.3.4", "::ffff:198.51.100.0/120"),
		Deny:  mustPrefixes(t, "192.0.2.128/25", "2001:db8:bad::/48", "8.8.4.0/24", "2002::/16"),
		Own:   []netip.Addr{netip.MustParseAddr("1.2.3.4")},
	})
	runCheckCases(t, p, []checkCase{
		{"allow beats special-purpose: TEST-NET-1 192.0.2.1 -> allow", "192.0.2.1", true, ReasonAllowCIDR, "", FormNone},
		{"allow beats special-purpose: RFC1918 10.1.2.3 -> allow", "10.1.2.3", true, ReasonAllowCIDR, "", FormNone},
		{"allow beats special-purpose: 2001:db8::1 -> allow", "2001:db8::1", true, ReasonAllowCIDR, "", FormNone},
		{"allow matches IPv4-mapped ::ffff:192.0.2.1 -> allow", "::ffff:192.0.2.1", true, ReasonAllowCIDR, "192.0.2.1", FormNone},
		{"allow matches embedded IPv4 in NAT64 64:ff9b::c000:201 -> allow", "64:ff9b::c000:201", true, ReasonAllowCIDR, "192.0.2.1", FormNAT64},
		{"allow matches embedded IPv4 in Teredo (global server) -> allow", "2001:0:808:808:0:f227:3fff:fdfe", true, ReasonAllowCIDR, "192.0.2.1", FormTeredo},
		{"allow given as mapped prefix ::ffff:198.51.100.0/120 -> allow", "198.51.100.9", true, ReasonAllowCIDR, "", FormNone},
		{"own beats allow (an allow list never re-opens the host): 1.2.3.4 -> deny", "1.2.3.4", false, ReasonOwnAddress, "", FormNone},
		{"own beats allow behind NAT64: 64:ff9b::102:304 -> deny", "64:ff9b::102:304", false, ReasonOwnAddress, "1.2.3.4", FormNAT64},
		{"directed broadcast of allowed 10/8: 10.255.255.255 -> deny", "10.255.255.255", false, ReasonBroadcast, "", FormNone},
		{"not a broadcast: ::ffff:192.0.2.127 -> allow", "::ffff:192.0.2.127", true, ReasonAllowCIDR, "192.0.2.127", FormNone},
		{"last address of allowed 198.51.100.0/24 (via mapped prefix) -> deny", "198.51.100.255", false, ReasonBroadcast, "", FormNone},
		{"network address of allowed 10/8 stays allowed: 10.0.0.0 -> allow", "10.0.0.0", true, ReasonAllowCIDR, "", FormNone},
		{"deny beats allow: 192.0.2.200 -> deny", "192.0.2.200", false, ReasonDenyCIDR, "", FormNone},
		{"deny beats allow: ::ffff:192.0.2.200 -> deny", "::ffff:192.0.2.200", false, ReasonDenyCIDR, "192.0.2.200", FormNone},
		{"deny beats allow: NAT64 64:ff9b::c000:2c8 -> deny", "64:ff9b::c000:2c8", false, ReasonDenyCIDR, "192.0.2.200", FormNAT64},
		{"deny beats allow: 2001:db8:bad::1 -> deny", "2001:db8:bad::1", false, ReasonDenyCIDR, "", FormNone},
		{"deny beats global: 8.8.4.4 -> deny", "8.8.4.4", false, ReasonDenyCIDR, "", FormNone},
		{"deny of embedded IPv4 reaches Teredo client 8.8.4.4 -> deny", "2001:0:808:808:0:f227:f7f7:fbfb", false, ReasonDenyCIDR, "8.8.4.4", FormTeredo},
		{"deny of carrier 2002::/16 with global IPv4 -> deny", "2002:808:808::1", false, ReasonDenyCIDR, "", FormNone},
		{"deny of carrier 2002::/16 with allowed IPv4 -> deny", "2002:c000:201::1", false, ReasonDenyCIDR, "", FormNone},
		{"allow of embedded IPv4 does not allow a reserved carrier ::192.0.2.1 -> deny", "::192.0.2.1", false, ReasonReserved, "", FormNone},
		{"allow of 10/8 does not allow 172.16.0.1 -> deny", "172.16.0.1", false, ReasonSpecialPurpose, "", FormNone},
	})
}

// The relay's relayed addresses are allowed (relay-to-relay, the port is the
// caller's check), after Deny and before the own-address rule; the host's
// other addresses stay denied whatever Allow says, and a /32 Allow of a
// broadcast address names it on purpose.
func TestCheckRelayAddresses(t *testing.T) {
	a := netip.MustParseAddr
	p := NewPeerPolicy(PeerPolicyConfig{
		Allow: mustPrefixes(t, "198.51.100.0/24", "203.0.113.255/32"),
		Deny:  mustPrefixes(t, "192.0.2.9"),
		Own:   []netip.Addr{a("192.0.2.7"), a("192.0.2.8"), a("192.0.2.9"), a("198.51.100.1"), a("2001:db8::7")},
		Relay: []netip.Addr{a("192.0.2.7"), a("2001:db8::7"), a("192.0.2.9")},
	})
	runCheckCases(t, p, []checkCase{
		{"relay IPv4 -> relay-address", "192.0.2.7", true, ReasonRelayAddress, "", FormNone},
		{"relay IPv4 mapped is not a relayed address -> own-address", "::ffff:192.0.2.7", false, ReasonOwnAddress, "192.0.2.7", FormNone},
		{"relay IPv4 behind NAT64 -> own-address", "64:ff9b::c000:207", false, ReasonOwnAddress, "192.0.2.7", FormNAT64},
		{"relay IPv6 -> relay-address", "2001:db8::7", true, ReasonRelayAddress, "", FormNone},
		{"other host address -> own-address", "192.0.2.8", false, ReasonOwnAddress, "", FormNone},
		{"host address inside an allowed subnet -> own-address", "198.51.100.1", false, ReasonOwnAddress, "", FormNone},
		{"relay address in deny_peers -> deny-cidr", "192.0.2.9", false, ReasonDenyCIDR, "", FormNone},
		{"broadcast of allowed /24 -> broadcast", "198.51.100.255", false, ReasonBroadcast, "", FormNone},
		{"/32 allow of a .255 -> allow", "203.0.113.255", true, ReasonAllowCIDR, "", FormNone},
		{"neighbour in allowed subnet -> allow", "198.51.100.2", true, ReasonAllowCIDR, "", FormNone},
	})
}

func TestCheckDenyBeatsAllowLoopback(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{AllowLoopback: true, Deny: mustPrefixes(t, "127.0.0.2", "::1/128")})
	runCheckCases(t, p, []checkCase{
		{"deny 127.0.0.2 beats allow loopback -> deny", "127.0.0.2", false, ReasonDenyCIDR, "", FormNone},
		{"deny 127.0.0.2 beats allow loopback in 6to4 -> deny", "2002:7f00:2::", false, ReasonDenyCIDR, "127.0.0.2", Form6to4},
		{"deny ::1 beats allow loopback -> deny", "::1", false, ReasonDenyCIDR, "", FormNone},
		{"127.0.0.1 still allowed -> allow", "127.0.0.1", true, ReasonAllowLoopback, "", FormNone},
	})
}

// TestCheckSecureDefault: a nil or zero-value policy denies everything.
func TestCheckSecureDefault(t *testing.T) {
	global := netip.MustParseAddr("8.8.8.8")
	var nilPolicy *PeerPolicy
	var zero PeerPolicy
	for name, p := range map[string]*PeerPolicy{"nil": nilPolicy, "zero value": &zero} {
		if v := p.Check(global); v.Allowed || v.Reason != ReasonNoPolicy || v.Addr != global {
			t.Errorf("%s policy: Check(%s) = %+v; want deny %q", name, global, v, ReasonNoPolicy)
		}
		if v := p.Check(netip.Addr{}); v.Allowed || v.Reason != ReasonInvalid {
			t.Errorf("%s policy: Check(zero Addr) = %+v; want deny %q", name, v, ReasonInvalid)
		}
	}
	if v := NewPeerPolicy(PeerPolicyConfig{}).Check(netip.Addr{}); v.Allowed || v.Reason != ReasonInvalid {
		t.Errorf("Check(zero Addr) = %+v; want deny %q", v, ReasonInvalid)
	}
}

// TestPeerPolicyImmutable: changing the config slices after construction does
// not change the policy (the relay reuses its config on SIGHUP).
func TestPeerPolicyImmutable(t *testing.T) {
	cfg := PeerPolicyConfig{
		Allow: mustPrefixes(t, "192.0.2.0/24"),
		Deny:  mustPrefixes(t, "8.8.4.0/24"),
		Own:   []netip.Addr{netip.MustParseAddr("1.2.3.4")},
	}
	p := NewPeerPolicy(cfg)
	cfg.Allow[0] = netip.MustParsePrefix("0.0.0.0/0")
	cfg.Deny[0] = netip.MustParsePrefix("0.0.0.0/0")
	cfg.Own[0] = netip.MustParseAddr("8.8.8.8")
	for _, c := range []struct {
		addr  string
		allow bool
	}{{"192.0.2.1", true}, {"10.0.0.1", false}, {"8.8.8.8", true}, {"8.8.4.4", false}, {"1.2.3.4", false}} {
		if v := p.Check(netip.MustParseAddr(c.addr)); v.Allowed != c.allow {
			t.Errorf("after mutating config: Check(%s) = %+v; want allowed=%v", c.addr, v, c.allow)
		}
	}
	got := p.Config()
	if len(got.Allow) != 1 || got.Allow[0] != netip.MustParsePrefix("192.0.2.0/24") ||
		len(got.Deny) != 1 || got.Deny[0] != netip.MustParsePrefix("8.8.4.0/24") ||
		len(got.Own) != 1 || got.Own[0] != netip.MustParseAddr("1.2.3.4") {
		t.Errorf("Config() = %+v; want the original configuration", got)
	}
}

func TestNewPeerPolicyCanonicalises(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), {}, netip.MustParsePrefix("::ffff:0.0.0.0/96")},
		Own:   []netip.Addr{{}, netip.MustParseAddr("fe80::1%eth0")},
	})
	c := p.Config()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/0")}
	if len(c.Allow) != 2 || c.Allow[0] != want[0] || c.Allow[1] != want[1] {
		t.Errorf("Allow = %v; want %v (masked, mapped prefix unmapped, zero dropped)", c.Allow, want)
	}
	if len(c.Own) != 1 || c.Own[0] != netip.MustParseAddr("fe80::1") {
		t.Errorf("Own = %v; want [fe80::1] (zone dropped, zero dropped)", c.Own)
	}
	if v := p.Check(netip.MustParseAddr("fe80::1%eth1")); v.Allowed || v.Reason != ReasonOwnAddress {
		t.Errorf("Check(fe80::1%%eth1) = %+v; want own-address", v)
	}
}

// TestCheckConcurrent is meant for -race: one policy, many goroutines.
func TestCheckConcurrent(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{Allow: mustPrefixes(t, "192.0.2.0/24")})
	addrs := []netip.Addr{
		netip.MustParseAddr("::ffff:127.0.0.1"),
		netip.MustParseAddr("192.0.2.7"),
		netip.MustParseAddr("2001:0:808:808:0:f227:80ff:fffe"),
		netip.MustParseAddr("8.8.8.8"),
	}
	want := make([]Verdict, len(addrs))
	for i, a := range addrs {
		want[i] = p.Check(a)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				j := i % len(addrs)
				if v := p.Check(addrs[j]); v != want[j] {
					errs <- addrs[j].String()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Check(%s) disagreed with the sequential verdict", e)
	}
}

func TestCheckNoAlloc(t *testing.T) {
	p := NewPeerPolicy(PeerPolicyConfig{Allow: mustPrefixes(t, "192.0.2.0/24"), Deny: mustPrefixes(t, "2001:db8::/32")})
	a := netip.MustParseAddr("2001:0:808:808:0:f227:3fff:fdfe")
	if n := testing.AllocsPerRun(100, func() { _ = p.Check(a) }); n != 0 {
		t.Fatalf("Check allocates %v times per call, want 0", n)
	}
}

var allReasons = map[string]bool{
	ReasonAllowed: true, ReasonAllowCIDR: true, ReasonAllowLoopback: true,
	ReasonInvalid: false, ReasonNoPolicy: false, ReasonDenyCIDR: false, ReasonOwnAddress: false,
	ReasonLoopback: false, ReasonSpecialPurpose: false, ReasonReserved: false,
}

// TestReasonsAreLabelSafe: reasons are Prometheus label values, short and
// lower-case, and distinct.
func TestReasonsAreLabelSafe(t *testing.T) {
	if len(allReasons) != 10 {
		t.Fatalf("reason constants are not distinct: %d unique", len(allReasons))
	}
	for r := range allReasons {
		if r == "" || len(r) > 24 {
			t.Errorf("reason %q: empty or longer than 24", r)
		}
		for _, c := range r {
			if !(c >= 'a' && c <= 'z' || c == '-') {
				t.Errorf("reason %q has %q; want [a-z-]", r, c)
			}
		}
	}
}
