package netaddr

import "net/netip"

// The tables below transcribe the IANA IPv4 Special-Purpose Address Registry
// (https://www.iana.org/assignments/iana-ipv4-special-registry/) and the IANA
// IPv6 Special-Purpose Address Registry
// (https://www.iana.org/assignments/iana-ipv6-special-registry/).
// Data date: transcribed 2026-11-22 from the registries as published then:
// IPv4 registry last updated 2020-09-04 (192.0.0.170/31, RFC 8880); IPv6
// registry including the 2024-10-22 revision and the later 100:0:0:1::/64
// (RFC 9780). Re-check both registries when updating this file.
//
// Two kinds of entries are not in those registries and are marked "[space]":
// the multicast blocks 224.0.0.0/4 and ff00::/8 come from the IPv4 and IPv6
// Address Space registries, so that one table answers "may we send here".
//
// Global is the registry's "Globally Reachable" column. Where the registry
// says "N/A" (2001::/32 Teredo, 2002::/16 6to4) the prefix is only a carrier
// of IPv4 addresses: we mark it Global and let the embedded IPv4 decide (see
// EmbeddedIPv4 and IsGlobal). The deprecated 6to4 relay anycast block
// 192.88.99.0/24 ("N/A" too) is marked not global: RFC 7526 retired it.

// SpecialRange is one entry of the IANA special-purpose address registries.
type SpecialRange struct {
	// Prefix is the registered address block.
	Prefix netip.Prefix
	// Name is the registry's name for the block, e.g. "Private-Use".
	Name string
	// RFC is the defining document(s), e.g. "RFC 1918".
	RFC string
	// Global reports whether addresses in the block are globally reachable.
	Global bool
}

func sr(prefix, name, rfc string, global bool) SpecialRange {
	return SpecialRange{Prefix: netip.MustParsePrefix(prefix), Name: name, RFC: rfc, Global: global}
}

// ipv4Special is the IPv4 special-purpose registry, in registry order.
var ipv4Special = []SpecialRange{
	sr("0.0.0.0/8", "This network", "RFC 791", false),
	sr("0.0.0.0/32", "This host on this network", "RFC 1122", false),
	sr("10.0.0.0/8", "Private-Use", "RFC 1918", false),
	sr("100.64.0.0/10", "Shared Address Space", "RFC 6598", false),
	sr("127.0.0.0/8", "Loopback", "RFC 1122", false),
	sr("169.254.0.0/16", "Link Local", "RFC 3927", false),
	sr("172.16.0.0/12", "Private-Use", "RFC 1918", false),
	sr("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", false),
	sr("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", false),
	sr("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", false),
	sr("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", true),
	sr("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", true),
	sr("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", false),
	sr("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", false),
	sr("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", false),
	sr("192.31.196.0/24", "AS112-v4", "RFC 7535", true),
	sr("192.52.193.0/24", "AMT", "RFC 7450", true),
	sr("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", false),
	sr("192.168.0.0/16", "Private-Use", "RFC 1918", false),
	sr("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", true),
	sr("198.18.0.0/15", "Benchmarking", "RFC 2544", false),
	sr("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", false),
	sr("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", false),
	sr("224.0.0.0/4", "Multicast [space]", "RFC 5771", false),
	sr("240.0.0.0/4", "Reserved", "RFC 1112", false),
	sr("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919", false),
}

// ipv6Special is the IPv6 special-purpose registry, in registry order.
var ipv6Special = []SpecialRange{
	sr("::1/128", "Loopback Address", "RFC 4291", false),
	sr("::/128", "Unspecified Address", "RFC 4291", false),
	sr("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", false),
	sr("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", true),
	sr("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", false),
	sr("100::/64", "Discard-Only Address Block", "RFC 6666", false),
	sr("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", false),
	sr("2001::/23", "IETF Protocol Assignments", "RFC 2928", false),
	sr("2001::/32", "TEREDO", "RFC 4380, RFC 8190", true), // registry: N/A
	sr("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", true),
	sr("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", true),
	sr("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", true),
	sr("2001:2::/48", "Benchmarking", "RFC 5180", false),
	sr("2001:3::/32", "AMT", "RFC 7450", true),
	sr("2001:4:112::/48", "AS112-v6", "RFC 7535", true),
	sr("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", false),
	sr("2001:20::/28", "ORCHIDv2", "RFC 7343", true),
	sr("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", true),
	sr("2001:db8::/32", "Documentation", "RFC 3849", false),
	sr("2002::/16", "6to4", "RFC 3056", true), // registry: N/A
	sr("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", true),
	sr("3fff::/20", "Documentation", "RFC 9637", false),
	sr("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", false),
	sr("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", false),
	sr("fe80::/10", "Link-Local Unicast", "RFC 4291", false),
	sr("ff00::/8", "Multicast [space]", "RFC 4291", false),
}

// The lookup tables are sorted most specific first, so the first match in a
// linear scan is the longest match, and precomputed as masked integers so a
// scan is a few compares per entry and does not allocate.
var (
	ipv4Lookup = compileTable(ipv4Special)
	ipv6Lookup = compileTable(ipv6Special)
)

// compiled is a SpecialRange with its prefix as masked 128-bit halves (IPv4
// in the low 32 bits of lo).
type compiled struct {
	hi, lo         uint64
	maskHi, maskLo uint64
	r              SpecialRange
}

func addrHalves(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	}
	b := a.As16()
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return hi, lo
}

func compileTable(t []SpecialRange) []compiled {
	out := make([]compiled, 0, len(t))
	for _, r := range t {
		c := compiled{r: r}
		c.hi, c.lo = addrHalves(r.Prefix.Addr())
		bits := r.Prefix.Bits()
		if r.Prefix.Addr().Is4() {
			bits += 96 // IPv4 sits in the low 32 bits
		}
		// Go defines shifts by 64 or more as 0, which covers /0 and /64.
		if bits >= 64 {
			c.maskHi = ^uint64(0)
			c.maskLo = ^uint64(0) << (128 - bits)
		} else {
			c.maskHi = ^uint64(0) << (64 - bits)
		}
		out = append(out, c)
	}
	// Insertion sort keeps registry order among equal lengths (stable).
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].r.Prefix.Bits() > out[j-1].r.Prefix.Bits(); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// globalUnicast6 is 2000::/3, the only IPv6 block IANA allocates as global
// unicast; everything else outside the special-purpose registry is reserved.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Lookup returns the most specific IANA special-purpose registry entry that
// contains a. It looks a up as given: an IPv4-mapped address finds the
// ::ffff:0:0/96 entry, not the entry of the IPv4 address it carries (use
// a.Unmap() or IsGlobal for that). A zone is ignored.
func Lookup(a netip.Addr) (SpecialRange, bool) {
	var table []compiled
	switch {
	case a.Is4():
		table = ipv4Lookup
	case a.Is6():
		table = ipv6Lookup
	default:
		return SpecialRange{}, false
	}
	hi, lo := addrHalves(a)
	for i := range table {
		c := &table[i]
		if hi&c.maskHi == c.hi && lo&c.maskLo == c.lo {
			return c.r, true
		}
	}
	return SpecialRange{}, false
}

// SpecialRanges returns a copy of the IPv4 and IPv6 registry tables, in
// registry order, for documentation and diagnostics.
func SpecialRanges() []SpecialRange {
	out := make([]SpecialRange, 0, len(ipv4Special)+len(ipv6Special))
	out = append(out, ipv4Special...)
	return append(out, ipv6Special...)
}

// reach classifies a single address (no embedded-IPv4 reduction).
type reach uint8

const (
	reachGlobal   reach = iota // globally reachable
	reachSpecial               // non-global special-purpose entry
	reachReserved              // IPv6 outside 2000::/3 and not in the registry
	reachInvalid               // the zero Addr
)

func classify(a netip.Addr) reach {
	if !a.IsValid() {
		return reachInvalid
	}
	if r, ok := Lookup(a); ok {
		if r.Global {
			return reachGlobal
		}
		return reachSpecial
	}
	if a.Is6() && !globalUnicast6.Contains(a.WithZone("")) {
		return reachReserved
	}
	return reachGlobal
}

// IsGlobal reports whether a is globally reachable according to the IANA
// special-purpose registries. An IPv4-mapped address is unmapped first, and an
// IPv6 address that embeds IPv4 addresses (see EmbeddedIPv4) is global only if
// it and every embedded IPv4 address are global. IPv6 addresses outside
// 2000::/3 that the registry does not list are reserved, hence not global.
func IsGlobal(a netip.Addr) bool {
	a = a.Unmap()
	if classify(a) != reachGlobal {
		return false
	}
	v4, n, _ := embedded(a)
	for _, e := range v4[:n] {
		if classify(e) != reachGlobal {
			return false
		}
	}
	return true
}
