package netaddr

import "net/netip"

// Family is an IP address family. Its zero value means "unknown".
type Family uint8

const (
	// IPv4 is the IPv4 address family (SDP network type "IP4").
	IPv4 Family = 4
	// IPv6 is the IPv6 address family (SDP network type "IP6").
	IPv6 Family = 6
)

// FamilyOf returns the family of a, treating an IPv4-mapped IPv6 address as
// IPv6 (it arrives on an IPv6 socket); call Unmap first to get IPv4.
func FamilyOf(a netip.Addr) Family {
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

// String returns "IPv4", "IPv6" or "unknown".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "unknown"
}

// Label returns the short lower-case form used in metric labels: "ip4", "ip6".
func (f Family) Label() string {
	switch f {
	case IPv4:
		return "ip4"
	case IPv6:
		return "ip6"
	}
	return "unknown"
}

// Other returns the opposite family, the one a cross-family relay hands out.
func (f Family) Other() Family {
	switch f {
	case IPv4:
		return IPv6
	case IPv6:
		return IPv4
	}
	return 0
}
