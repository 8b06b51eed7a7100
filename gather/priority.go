package gather

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Type preferences, RFC 8445 §5.1.2.2 recommended values.
const (
	typePrefHost  = 126
	typePrefSrflx = 100
	typePrefRelay = 0
)

// rtpComponent is ICE component 1: RTP, and RTCP too when multiplexed
// (RFC 5761). Component 2 (rtcp.go) exists only for offers without
// a=rtcp-mux.
const rtpComponent = 1

// candidatePriority is RFC 8445 §5.1.2.1:
// 2^24*(type preference) + 2^8*(local preference) + (256 - component ID).
func candidatePriority(typePref, localPref uint32, component uint16) uint32 {
	return typePref<<24 | (localPref&0xffff)<<8 | (256 - uint32(component))
}

// precedence returns an address's precedence in the RFC 6724 §2.1 default
// policy table: native IPv6 40 > IPv4 35 > 6to4 30 > Teredo 5 > ULA 3.
func precedence(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 35
	}
	for _, e := range precedenceTable {
		if e.prefix.Contains(a.WithZone("")) {
			return e.precedence
		}
	}
	return 40
}

// precedenceTable holds the entries of RFC 6724's table that differ from
// ::/0 (40), longest prefixes first.
var precedenceTable = []struct {
	prefix     netip.Prefix
	precedence int
}{
	{netip.MustParsePrefix("::1/128"), 50},
	{netip.MustParsePrefix("::/96"), 1},
	{netip.MustParsePrefix("2001::/32"), 5},
	{netip.MustParsePrefix("2002::/16"), 30},
	{netip.MustParsePrefix("fec0::/10"), 1},
	{netip.MustParsePrefix("3ffe::/16"), 1},
	{netip.MustParsePrefix("fc00::/7"), 3},
}

// interleave orders addresses per RFC 8421 §4: each family sorted by RFC
// 6724 precedence, then the two families alternate, starting with the
// family of the best address. IPv6 thus comes first on a host with native
// IPv6, yet the second candidate is already IPv4, so a broken IPv6 path
// never starves IPv4 (and vice versa).
func interleave(addrs []netip.Addr) []netip.Addr {
	var v6, v4 []netip.Addr
	for _, a := range addrs {
		if netaddr.FamilyOf(a) == netaddr.IPv6 {
			v6 = append(v6, a)
		} else {
			v4 = append(v4, a)
		}
	}
	byPrec := func(x, y netip.Addr) int { return precedence(y) - precedence(x) }
	slices.SortStableFunc(v6, byPrec)
	slices.SortStableFunc(v4, byPrec)
	first, second := v6, v4
	if len(v6) == 0 || (len(v4) > 0 && precedence(v4[0]) > precedence(v6[0])) {
		first, second = v4, v6
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return out
}

// hostLocalPref is the local preference of the host candidate at position
// pos of the interleaved order: unique, decreasing.
func hostLocalPref(pos int) uint32 {
	return uint32(65535 - min(pos, 65535)) //nolint:gosec // bounded above
}

// serverLocalPref is the local preference of a server-reflexive or relayed
// candidate: the transport to the server first (UDP > TCP > TLS, as
// libwebrtc does), then the family interleave: for server number idx the
// IPv6 candidate is at 2*idx and the IPv4 one at 2*idx+1 — so with one
// server the two families get adjacent, unique preferences, IPv6 first.
func serverLocalPref(proto string, f netaddr.Family, idx int) uint32 {
	var protoPref uint32
	switch proto {
	case "udp":
		protoPref = 3
	case "tcp":
		protoPref = 1
	default: // tls
		protoPref = 0
	}
	pos := 2 * idx
	if f == netaddr.IPv4 {
		pos++
	}
	return protoPref<<13 | uint32(8191-min(pos, 8191)) //nolint:gosec // bounded above
}

// foundation is RFC 8445 §5.1.1.3: equal for candidates of the same type,
// base IP, server and transport; here a short decimal hash of those.
func foundation(typ string, base netip.Addr, serverAddr netip.Addr, proto string) string {
	h := fnv.New32a()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write(base.WithZone("").AsSlice())
	h.Write([]byte{0})
	if serverAddr.IsValid() {
		h.Write(serverAddr.AsSlice())
	}
	h.Write([]byte(proto))
	return strconv.FormatUint(uint64(h.Sum32()), 10)
}
