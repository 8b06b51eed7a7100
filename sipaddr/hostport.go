package sipaddr

import (
	"net/netip"
	"strconv"
)

// HostPort is RFC 3261 §25.1 hostport = host [ ":" port ], as in a SIP URI
// or a Via sent-by. Port 0 means no port was given (a literal ":0" is
// refused: it names no port a message could be sent to).
type HostPort struct {
	Host Host
	Port uint16
}

// ParseHostPort reads host [":" port]. For an IPv6 reference the port is
// outside "]" ("[2001:db8::10]:5070"); everything inside the brackets is
// address, so "[2001:db8::10:5070]" is an address with no port (RFC 5118
// §4.3) and is never "repaired". An IPv6 address without brackets is
// ErrUnbracketedIPv6.
func ParseHostPort(s string) (HostPort, error) {
	h, port, hasPort, err := parseHostPort("hostport", s)
	if err != nil {
		return HostPort{}, err
	}
	hp := HostPort{Host: h}
	if hasPort {
		p, detail := parsePort(port)
		if detail != "" {
			return HostPort{}, newError("hostport", s, ErrBadPort, detail)
		}
		hp.Port = p
	}
	return hp, nil
}

// parsePort reads 1*DIGIT in 1..65535; it returns why not on failure.
func parsePort(s string) (uint16, string) {
	if s == "" {
		return 0, "empty port"
	}
	if len(s) > 5 {
		return 0, strconv.Quote(s) + " is not a port"
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, strconv.Quote(s) + " is not a port"
		}
	}
	n, _ := strconv.Atoi(s)
	if n == 0 || n > 65535 {
		return 0, strconv.Quote(s) + " is out of range 1-65535"
	}
	return uint16(n), ""
}

// HostPortFromAddrPort returns the HostPort of an IP address and port.
func HostPortFromAddrPort(ap netip.AddrPort) HostPort {
	return HostPort{Host: HostFromAddr(ap.Addr()), Port: ap.Port()}
}

// AddrPort returns the address and port of an IP literal, with def as the
// port when none was given (5060 for sip, 5061 for sips: RFC 3261 §19.1.2).
// ok is false for a name, which needs RFC 3263 resolution first.
func (hp HostPort) AddrPort(def uint16) (ap netip.AddrPort, ok bool) {
	if !hp.Host.IsIP() {
		return netip.AddrPort{}, false
	}
	p := hp.Port
	if p == 0 {
		p = def
	}
	return netip.AddrPortFrom(hp.Host.Addr(), p), true
}

// String writes host[:port], IPv6 always in brackets.
func (hp HostPort) String() string {
	if hp.Port == 0 {
		return hp.Host.String()
	}
	return hp.Host.String() + ":" + strconv.Itoa(int(hp.Port))
}
