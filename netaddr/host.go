package netaddr

import "net/netip"

var (
	pfxThisNetwork4 = netip.MustParsePrefix("0.0.0.0/8")
	pfxReserved4    = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	pfxULA          = netip.MustParsePrefix("fc00::/7")
)

// IsUsableHost reports whether a may be offered as a host candidate or chosen
// as a relay address when auto-detecting from interfaces. Usable means
// unicast in the sense of netip.Addr.IsGlobalUnicast — which, unlike
// IsGlobal, includes private-use IPv4 (RFC 1918), shared (RFC 6598) and
// documentation space, because endpoints behind NAT and test namespaces live
// there — or IPv6 unique-local (fc00::/7). For IPv6 only 2000::/3 and
// fc00::/7 qualify. Link-local unicast (169.254.0.0/16, fe80::/10) is usable
// only when allowLinkLocal is set. Loopback, multicast, unspecified,
// 0.0.0.0/8, 240.0.0.0/4 and broadcast never are, nor a 6to4 or Teredo
// address whose embedded IPv4 address is not usable. An IPv4-mapped address
// is judged as the IPv4 address it maps.
func IsUsableHost(a netip.Addr, allowLinkLocal bool) bool {
	a = a.Unmap().WithZone("")
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
		return false
	}
	if a.IsLinkLocalUnicast() {
		return allowLinkLocal
	}
	if a.Is4() {
		return !pfxThisNetwork4.Contains(a) && !pfxReserved4.Contains(a)
	}
	if !globalUnicast6.Contains(a) && !pfxULA.Contains(a) {
		return false
	}
	v4, n, _ := embedded(a)
	for _, e := range v4[:n] {
		if !IsUsableHost(e, false) {
			return false
		}
	}
	return true
}
