package netaddr

import "net/netip"

// EmbeddedForm names the way an IPv6 address carries IPv4 addresses.
type EmbeddedForm uint8

const (
	// FormNone means the address carries no IPv4 address (or is IPv4).
	FormNone EmbeddedForm = iota
	// FormIPv4Mapped is ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2).
	FormIPv4Mapped
	// FormIPv4Compatible is the deprecated ::a.b.c.d (RFC 4291 section
	// 2.5.5.1), excluding :: and ::1.
	FormIPv4Compatible
	// FormNAT64 is the NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
	FormNAT64
	// FormNAT64Local is the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215)
	// with the RFC 6052 /48 layout: IPv4 bits at 48-63 and 72-87.
	FormNAT64Local
	// Form6to4 is 2002:AABB:CCDD::/48 (RFC 3056).
	Form6to4
	// FormTeredo is 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC (RFC 4380): the
	// server address and the client address (stored XOR 0xffffffff).
	FormTeredo
)

// String returns a short lower-case name usable as a metric label or log
// field, e.g. "nat64" or "teredo".
func (f EmbeddedForm) String() string {
	switch f {
	case FormNone:
		return "none"
	case FormIPv4Mapped:
		return "ipv4-mapped"
	case FormIPv4Compatible:
		return "ipv4-compatible"
	case FormNAT64:
		return "nat64"
	case FormNAT64Local:
		return "nat64-local"
	case Form6to4:
		return "6to4"
	case FormTeredo:
		return "teredo"
	}
	return "unknown"
}

// MaxEmbedded is the most IPv4 addresses one IPv6 address can carry (Teredo:
// server and client).
const MaxEmbedded = 2

// EmbeddedIPv4 returns the IPv4 address(es) that the IPv6 address a carries
// and the form they are carried in. For Teredo it returns the server address
// first and the de-obfuscated client address second; every other form yields
// one address. An IPv4 address, an invalid address or an IPv6 address of no
// embedding form yields (nil, FormNone). A zone is ignored.
//
// Use AppendEmbeddedIPv4 on hot paths to avoid the allocation.
func EmbeddedIPv4(a netip.Addr) (v4 []netip.Addr, form EmbeddedForm) {
	arr, n, form := embedded(a)
	if n == 0 {
		return nil, form
	}
	return append([]netip.Addr(nil), arr[:n]...), form
}

// AppendEmbeddedIPv4 is EmbeddedIPv4 appending to dst: with a dst of
// capacity MaxEmbedded it does not allocate.
func AppendEmbeddedIPv4(dst []netip.Addr, a netip.Addr) ([]netip.Addr, EmbeddedForm) {
	arr, n, form := embedded(a)
	return append(dst, arr[:n]...), form
}

// Prefixes of the embedding forms. The compatible form is matched by hand.
var (
	pfxNAT64      = netip.MustParsePrefix("64:ff9b::/96")
	pfxNAT64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	pfx6to4       = netip.MustParsePrefix("2002::/16")
	pfxTeredo     = netip.MustParsePrefix("2001::/32")
)

// embedded is the allocation-free core of EmbeddedIPv4.
func embedded(a netip.Addr) (v4 [MaxEmbedded]netip.Addr, n int, form EmbeddedForm) {
	if !a.Is6() {
		return v4, 0, FormNone
	}
	a = a.WithZone("")
	if a.Is4In6() {
		v4[0] = a.Unmap()
		return v4, 1, FormIPv4Mapped
	}
	b := a.As16()
	switch {
	case isCompatible(b):
		v4[0] = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		return v4, 1, FormIPv4Compatible
	case pfxNAT64.Contains(a):
		v4[0] = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		return v4, 1, FormNAT64
	case pfxNAT64Local.Contains(a):
		// RFC 6052 section 2.2, /48 layout: bits 64-71 are the "u" octet.
		v4[0] = netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]})
		return v4, 1, FormNAT64Local
	case pfx6to4.Contains(a):
		v4[0] = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		return v4, 1, Form6to4
	case pfxTeredo.Contains(a):
		v4[0] = netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
		v4[1] = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		return v4, 2, FormTeredo
	}
	return v4, 0, FormNone
}

// isCompatible reports the IPv4-compatible form ::a.b.c.d, excluding :: and
// ::1 which RFC 4291 gives other meanings.
func isCompatible(b [16]byte) bool {
	for _, x := range b[:12] {
		if x != 0 {
			return false
		}
	}
	if b[12]|b[13]|b[14] == 0 && b[15] <= 1 {
		return false
	}
	return true
}
