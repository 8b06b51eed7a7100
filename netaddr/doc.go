// Package netaddr is Isthmus's shared address policy, used by the relay
// (peer permissions, relay address auto-detection) and by the SDK (host
// candidate selection).
//
// It holds:
//
//   - Family, the IPv4/IPv6 address family with its SDP and metric names;
//   - the IANA IPv4 and IPv6 Special-Purpose Address Registries as data
//     (SpecialRange, Lookup, IsGlobal);
//   - EmbeddedIPv4, which finds the IPv4 addresses an IPv6 address carries:
//     IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96, 64:ff9b:1::/48),
//     6to4 and Teredo;
//   - PeerPolicy, the relay's secure-by-default peer filter: it denies
//     non-global special-purpose addresses and the relay's own addresses,
//     in every embedded-IPv4 form (the CVE-2020-26262 class, where
//     ::ffff:127.0.0.1 reached the relay's loopback), with explicit
//     allow/deny prefixes and a loopback switch for tests;
//   - IsUsableHost, which picks interface addresses worth offering;
//   - ParsePrefixes for configuration lists;
//   - the RFC 6724 default policy table (Precedence, Label, ScopeOf) and
//     destination address selection (SortDestinations), which orders a
//     name's addresses by the source addresses the host has.
//
// Example:
//
//	allow, _ := netaddr.ParsePrefixes([]string{"192.0.2.0/24"})
//	p := netaddr.NewPeerPolicy(netaddr.PeerPolicyConfig{Allow: allow})
//	v := p.Check(netip.MustParseAddr("::ffff:127.0.0.1"))
//	// v.Allowed == false, v.Reason == netaddr.ReasonLoopback
package netaddr
