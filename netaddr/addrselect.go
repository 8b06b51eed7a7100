package netaddr

import (
	"cmp"
	"net/netip"
	"slices"
)

// This file is RFC 6724 destination address selection: the default policy
// table (§2.1), address scopes (§3.1) and the destination sort (§6). Go's
// own copy lives unexported in net (addrselect.go), so callers that order
// addresses themselves (SRV targets, ICE servers) need this one.

// Scope is an RFC 4007 address scope as RFC 6724 §3.1 assigns it; a smaller
// value is a smaller scope.
type Scope uint8

// Scopes used by RFC 6724. IPv4 loopback and link-local addresses are
// link-local scope, every other IPv4 address global (§3.2).
const (
	ScopeInterfaceLocal Scope = 0x1
	ScopeLinkLocal      Scope = 0x2
	ScopeAdminLocal     Scope = 0x4
	ScopeSiteLocal      Scope = 0x5
	ScopeOrgLocal       Scope = 0x8
	ScopeGlobal         Scope = 0xe
)

// policyEntry is one row of the RFC 6724 §2.1 policy table.
type policyEntry struct {
	prefix     netip.Prefix
	precedence uint8
	label      uint8
}

// defaultPolicy is the RFC 6724 §2.1 default policy table, longest prefix
// first so the first match is the longest. IPv4 addresses are looked up in
// their IPv4-mapped form (::ffff:0:0/96), as §2.1 says.
var defaultPolicy = []policyEntry{
	{netip.MustParsePrefix("::1/128"), 50, 0},
	{netip.MustParsePrefix("::ffff:0:0/96"), 35, 4},
	{netip.MustParsePrefix("::/96"), 1, 3},
	{netip.MustParsePrefix("2001::/32"), 5, 5},
	{netip.MustParsePrefix("2002::/16"), 30, 2},
	{netip.MustParsePrefix("3ffe::/16"), 1, 12},
	{netip.MustParsePrefix("fec0::/10"), 1, 11},
	{netip.MustParsePrefix("fc00::/7"), 3, 13},
	{netip.MustParsePrefix("::/0"), 40, 1},
}

func policyOf(a netip.Addr) policyEntry {
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	a = a.WithZone("")
	for _, e := range defaultPolicy {
		if e.prefix.Contains(a) {
			return e
		}
	}
	return policyEntry{} // unreachable: ::/0 matches every IPv6 address
}

// Precedence returns a's precedence in the RFC 6724 default policy table;
// higher is preferred. The zero Addr has precedence 0.
func Precedence(a netip.Addr) uint8 {
	if !a.IsValid() {
		return 0
	}
	return policyOf(a).precedence
}

// Label returns a's label in the RFC 6724 default policy table. A source and
// destination with equal labels are preferred together (rule 5). The zero
// Addr has label 0xff, which matches nothing the table yields.
func Label(a netip.Addr) uint8 {
	if !a.IsValid() {
		return 0xff
	}
	return policyOf(a).label
}

// ScopeOf returns a's scope per RFC 6724 §3.1. IPv4-mapped addresses take
// the scope of the IPv4 address they carry.
func ScopeOf(a netip.Addr) Scope {
	a = a.Unmap()
	switch {
	case a.Is4():
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			return ScopeLinkLocal
		}
		return ScopeGlobal
	case a.IsMulticast():
		return Scope(a.As16()[1] & 0xf)
	case a.IsLoopback(), a.IsLinkLocalUnicast():
		return ScopeLinkLocal
	case siteLocal.Contains(a.WithZone("")):
		return ScopeSiteLocal // deprecated site-local, RFC 3879
	}
	return ScopeGlobal
}

// siteLocal is fec0::/10, deprecated by RFC 3879 but still scoped by RFC 6724.
var siteLocal = netip.MustParsePrefix("fec0::/10")

// Destination is one candidate destination with the source address the host
// would use to reach it (RFC 6724 §6 sorts pairs, not bare addresses).
type Destination struct {
	Addr netip.Addr
	// Source is the source address for Addr; the zero Addr means there is
	// none: Addr is unreachable (rule 1).
	Source netip.Addr
}

// ipv6InterfaceIDBits is where rule 9's common-prefix count stops: RFC 6724
// §2.2 counts "up to the length of A's prefix", and that is /64 on any
// network SLAAC runs on.
const ipv6InterfaceIDBits = 64

// CompareDestinations orders two destinations by the RFC 6724 §6 rules; a
// negative result means a is preferred. Rules 3, 4 and 7 need kernel state
// (deprecated, home and native-transport flags) that no portable API
// exposes, so they are treated as ties, as Go's resolver does.
func CompareDestinations(a, b Destination) int {
	// Rule 1: avoid unusable destinations.
	if ua, ub := a.Source.IsValid(), b.Source.IsValid(); ua != ub {
		if ua {
			return -1
		}
		return 1
	}
	if !a.Source.IsValid() {
		return 0 // both unusable: no rule below has a source to look at
	}
	da, db := a.Addr.Unmap(), b.Addr.Unmap()
	sa, sb := a.Source.Unmap(), b.Source.Unmap()
	scopeDA, scopeDB := ScopeOf(da), ScopeOf(db)

	// Rule 2: prefer matching scope.
	if ma, mb := scopeDA == ScopeOf(sa), scopeDB == ScopeOf(sb); ma != mb {
		if ma {
			return -1
		}
		return 1
	}
	// Rule 5: prefer matching label.
	if ma, mb := Label(da) == Label(sa), Label(db) == Label(sb); ma != mb {
		if ma {
			return -1
		}
		return 1
	}
	// Rule 6: prefer higher precedence.
	if c := cmp.Compare(Precedence(db), Precedence(da)); c != 0 {
		return c
	}
	// Rule 8: prefer smaller scope.
	if c := cmp.Compare(scopeDA, scopeDB); c != 0 {
		return c
	}
	// Rule 9: use the longest matching prefix. Only between IPv6
	// destinations: for IPv4 it defeats DNS round robin (golang/go#13283,
	// golang/go#18518), and RFC 6724 §2.2 allows leaving IPv4 out.
	if da.Is6() && db.Is6() && sa.Is6() && sb.Is6() {
		if c := cmp.Compare(commonPrefixLen(sb, db), commonPrefixLen(sa, da)); c != 0 {
			return c
		}
	}
	// Rule 10: otherwise, leave the order unchanged.
	return 0
}

// SortDestinations sorts ds by RFC 6724 §6, most preferred first. The sort
// is stable, so equal destinations keep their DNS order (rule 10).
func SortDestinations(ds []Destination) {
	slices.SortStableFunc(ds, CompareDestinations)
}

// commonPrefixLen counts the leading bits a and b share, up to the end of
// the /64 network prefix.
func commonPrefixLen(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range ipv6InterfaceIDBits / 8 {
		d := x[i] ^ y[i]
		if d == 0 {
			n += 8
			continue
		}
		for d&0x80 == 0 {
			n++
			d <<= 1
		}
		return n
	}
	return n
}
