package sipaddr

import (
	"net"
	"strconv"
	"strings"
)

// Boundary helpers for github.com/emiago/sipgo v1.7.3, which will carry our
// SIP. They work on the strings sipgo stores, so this package does not
// import sipgo. What they compensate for, read in sipgo v1.7.3's sip/:
//
//   - parse_uri.go uriStateHostIPV6 keeps "[...]" in Uri.Host without
//     checking what is inside, and drops anything after "]" that is not
//     ":", ";" or "?" (so "[zzzz]" and "[2001:db8::1]x" are accepted).
//   - parse_via.go viaStateHost strips the brackets: ViaHeader.Host is
//     "2001:db8::9:1", while Uri.Host is "[2001:db8::10]".
//   - utils.go uriIP, used by both writers, adds brackets only when
//     net.ParseIP succeeds and To4 is nil: an IPv4-mapped address (To4 is
//     not nil) and a zoned one (net.ParseIP fails) are written bare.
//   - request.go sourceVia builds "host:port" with uriNetIP, which strips
//     brackets, so an IPv6 Via gives "2001:db8::9:1:5060", a destination
//     its own transport.go ParseAddr (net.SplitHostPort) rejects.

// ToSipgoURIHost returns h as sipgo's Uri.Host holds it: IPv6 in brackets,
// which sipgo's writer then keeps as is, mapped and zoned ones included.
func ToSipgoURIHost(h Host) string { return h.String() }

// FromSipgoURIHost reads a sipgo Uri.Host, checking what sipgo did not:
// the inside of the brackets. (Junk sipgo dropped after "]" is gone by
// then; read the raw URI with ParseURI where it is at hand.)
func FromSipgoURIHost(s string) (Host, error) { return ParseHost(s) }

// ToSipgoViaHost returns h as sipgo's ViaHeader.Host holds it: a plain
// IPv6 address without brackets (sipgo's writer adds them). An IPv4-mapped
// or zoned address is given in brackets instead, because sipgo would write
// it bare; sipgo's own source address for such a Via stays unusable (use
// ToSipgoDestination).
func ToSipgoViaHost(h Host) string {
	a := h.Addr()
	if h.Kind() != KindIPv6 || a.Is4In6() || a.Zone() != "" {
		return h.String()
	}
	return a.String()
}

// FromSipgoViaHost reads a sipgo ViaHeader.Host: an IPv6 address without
// brackets (sipgo's convention), or with them, or an IPv4 address or name.
func FromSipgoViaHost(s string) (Host, error) {
	if s == "" || s[0] == '[' || !strings.Contains(s, ":") {
		return ParseHost(s)
	}
	if len(s) > MaxHostLen {
		return Host{}, newError("host", s[:32]+"...", ErrBadIPv6, "longer than "+strconv.Itoa(MaxHostLen)+" bytes")
	}
	a, q, detail, sentinel := parseIPv6Ref(s)
	if sentinel != nil {
		return Host{}, newError("host", s, sentinel, detail)
	}
	return Host{addr: a, quirks: q}, nil
}

// ToSipgoDestination returns "host:port" as sipgo's ParseAddr (and
// net.Dial) read it: net.JoinHostPort, so IPv6 is "[2001:db8::1]:5060" and
// a zone is "[fe80::1%eth0]:5060" (net's form, not RFC 6874's). def is the
// port when hp has none.
func ToSipgoDestination(hp HostPort, def uint16) string {
	port := hp.Port
	if port == 0 {
		port = def
	}
	host := hp.Host.Name()
	if hp.Host.IsIP() {
		host = hp.Host.Addr().String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}
