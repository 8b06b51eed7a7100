package sipaddr

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// MaxHostLen bounds a hostname (RFC 1035 §2.3.4: 255 octets) and, with
// room for brackets and a zone, any host text this package reads.
const MaxHostLen = 255

// Kind says what a Host holds.
type Kind uint8

const (
	// KindName is a hostname (RFC 3261 §25.1 hostname).
	KindName Kind = iota + 1
	// KindIPv4 is an IPv4address literal.
	KindIPv4
	// KindIPv6 is an IPv6reference literal, IPv4-mapped and zoned included.
	KindIPv6
)

// String returns "name", "IPv4", "IPv6" or "invalid".
func (k Kind) String() string {
	switch k {
	case KindName:
		return "name"
	case KindIPv4:
		return "IPv4"
	case KindIPv6:
		return "IPv6"
	}
	return "invalid"
}

// Host is a SIP host (RFC 3261 §25.1 host = hostname / IPv4address /
// IPv6reference): a name, or an IP literal held as a netip.Addr. The zero
// Host is invalid. Host is comparable; use Equal to compare as RFC 3261
// §19.1.4 and RFC 5954 §3 do (names without case, addresses by value).
type Host struct {
	name   string
	addr   netip.Addr
	quirks Quirk
}

// HostFromAddr returns the Host for an IP literal. An IPv4-mapped address
// stays IPv6 (it is written "[::ffff:192.0.2.1]"); call Unmap first for IPv4.
func HostFromAddr(a netip.Addr) Host {
	return Host{addr: a}
}

// HostFromName returns the Host for a hostname, checked against RFC 3261
// §25.1. A dotted-decimal string is not a name: use ParseHost for that.
func HostFromName(name string) (Host, error) {
	if detail := checkHostname(name); detail != "" {
		return Host{}, newError("host", name, ErrBadHostname, detail)
	}
	return Host{name: name}, nil
}

// Kind reports what h holds; 0 for the zero Host.
func (h Host) Kind() Kind {
	switch {
	case h.name != "":
		return KindName
	case h.addr.Is4():
		return KindIPv4
	case h.addr.Is6():
		return KindIPv6
	}
	return 0
}

// IsValid reports whether h is not the zero Host.
func (h Host) IsValid() bool { return h.Kind() != 0 }

// IsIP reports whether h is an IP literal.
func (h Host) IsIP() bool { return h.addr.IsValid() }

// Addr returns the address of an IP literal (with its zone), or the zero
// Addr for a name.
func (h Host) Addr() netip.Addr { return h.addr }

// Name returns the hostname as written, or "" for an IP literal.
func (h Host) Name() string { return h.name }

// Family returns the family of an IP literal (IPv6 for an IPv4-mapped
// one), 0 for a name.
func (h Host) Family() netaddr.Family { return netaddr.FamilyOf(h.addr) }

// Quirks returns the tolerated deviations h was read with.
func (h Host) Quirks() Quirk { return h.quirks }

// Equal compares as RFC 3261 §19.1.4 does: names case-insensitively,
// addresses by value whatever their text (RFC 5954 §3), zones included.
// Quirks are ignored.
func (h Host) Equal(o Host) bool {
	if h.name != "" || o.name != "" {
		return strings.EqualFold(strings.TrimSuffix(h.name, "."), strings.TrimSuffix(o.name, "."))
	}
	return h.addr == o.addr
}

// String writes h as a SIP host: the name, the dotted IPv4 address, or the
// IPv6 address in brackets, always, IPv4-mapped and zoned ones too. A zone
// is written "%25zone" (RFC 6874 §2), the only form a URI may carry.
func (h Host) String() string {
	if h.name != "" {
		return h.name
	}
	if !h.addr.IsValid() {
		return ""
	}
	if h.addr.Is4() {
		return h.addr.String()
	}
	return "[" + ipv6Text(h.addr) + "]"
}

// ipv6Text is an IPv6 address as RFC 5952 text with an RFC 6874 zone.
func ipv6Text(a netip.Addr) string {
	zone := a.Zone()
	s := a.WithZone("").String()
	if zone != "" {
		s += "%25" + escapeZone(zone)
	}
	return s
}

// ParseHost reads a host with no port: a hostname, an IPv4 address or a
// bracketed IPv6 reference. An IPv6 address without brackets is an error
// (ErrUnbracketedIPv6), as is anything after "]".
func ParseHost(s string) (Host, error) {
	h, port, hasPort, err := parseHostPort("host", s)
	if err != nil {
		return Host{}, err
	}
	if hasPort {
		return Host{}, newError("host", s, ErrPortNotAllowed, "\":"+port+"\"")
	}
	return h, nil
}

// parseHostPort splits and checks host [":" port]; port is returned as text
// (unchecked) so ParseHost can refuse it and ParseHostPort can read it.
func parseHostPort(part, s string) (h Host, port string, hasPort bool, err error) {
	if s == "" {
		return Host{}, "", false, newError(part, s, ErrEmpty, "")
	}
	if len(s) > MaxHostLen+8 {
		return Host{}, "", false, newError(part, s[:32]+"...", ErrBadHostname, "longer than "+strconv.Itoa(MaxHostLen)+" bytes")
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Host{}, "", false, newError(part, s, ErrBrackets, "no ']'")
		}
		a, q, detail, sentinel := parseIPv6Ref(s[1:end])
		if sentinel != nil {
			return Host{}, "", false, newError(part, s, sentinel, detail)
		}
		h = Host{addr: a, quirks: q}
		rest := s[end+1:]
		switch {
		case rest == "":
			return h, "", false, nil
		case rest[0] == ':':
			return h, rest[1:], true, nil
		default:
			return Host{}, "", false, newError(part, s, ErrAfterBracket, strconv.Quote(rest))
		}
	}
	if strings.ContainsAny(s, "[]") {
		return Host{}, "", false, newError(part, s, ErrBrackets, "")
	}
	switch strings.Count(s, ":") {
	case 0:
	case 1:
		i := strings.IndexByte(s, ':')
		s, port, hasPort = s[:i], s[i+1:], true
	default:
		return Host{}, "", false, newError(part, s, ErrUnbracketedIPv6, "")
	}
	h, err = parseBareHost(part, s)
	return h, port, hasPort, err
}

// parseBareHost reads a hostname or an IPv4 address (no brackets, no port).
func parseBareHost(part, s string) (Host, error) {
	if s == "" {
		return Host{}, newError(part, s, ErrEmpty, "")
	}
	if isDottedDecimal(s) {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return Host{}, newError(part, s, ErrBadIPv4, "")
		}
		return Host{addr: a}, nil
	}
	if detail := checkHostname(s); detail != "" {
		return Host{}, newError(part, s, ErrBadHostname, detail)
	}
	return Host{name: s}, nil
}

// isDottedDecimal reports whether s is digits and dots with a dot in it:
// the shape of RFC 3261's IPv4address, which no hostname has (a top label
// starts with a letter).
func isDottedDecimal(s string) bool {
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			dot = true
		case c < '0' || c > '9':
			return false
		}
	}
	return dot
}

// checkHostname returns "" when s is an RFC 3261 §25.1 hostname, else why
// not. hostname = *( domainlabel "." ) toplabel [ "." ].
func checkHostname(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > MaxHostLen {
		return "longer than " + strconv.Itoa(MaxHostLen) + " bytes"
	}
	s = strings.TrimSuffix(s, ".")
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "" {
			return "empty label"
		}
		if len(l) > 63 {
			return "label longer than 63 bytes"
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !isAlnum(c) && c != '-' {
				return "character " + strconv.QuoteRune(rune(c)) + " not allowed"
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "label starts or ends with '-'"
		}
		if i == len(labels)-1 && !isAlpha(l[0]) {
			return "top label " + strconv.Quote(l) + " does not start with a letter"
		}
	}
	return ""
}

// parseIPv6Ref reads the inside of "[...]": an IPv6 address, maybe with a
// zone, maybe in the three-colon form RFC 5118 §4.10 tolerates. It returns
// a sentinel and a detail on failure. The same reader serves bare
// received= values so zones and quirks are treated one way everywhere.
func parseIPv6Ref(inner string) (netip.Addr, Quirk, string, error) {
	if inner == "" {
		return netip.Addr{}, 0, "empty brackets", ErrBadIPv6
	}
	var q Quirk
	text, zone := inner, ""
	if i := strings.IndexByte(inner, '%'); i >= 0 {
		text = inner[:i]
		z, raw, detail := unescapeZone(inner[i+1:])
		if detail != "" {
			return netip.Addr{}, 0, "zone: " + detail, ErrBadIPv6
		}
		if raw {
			q |= QuirkRawZone
		}
		zone = z
	}
	for i := 0; i < len(text); i++ {
		if c := text[i]; !isHex(c) && c != ':' && c != '.' {
			return netip.Addr{}, 0, "character " + strconv.QuoteRune(rune(c)) + " not allowed", ErrBadIPv6
		}
	}
	if !strings.Contains(text, ":") {
		if a, err := netip.ParseAddr(text); err == nil && a.Is4() {
			return netip.Addr{}, 0, "", ErrIPv4InBrackets
		}
		return netip.Addr{}, 0, "no ':'", ErrBadIPv6
	}
	if i := strings.Index(text, ":::"); i >= 0 {
		// RFC 3261 hexpart "::" followed by ":" IPv4address: only there is
		// a third colon tolerated (RFC 5118 §4.10).
		tail := text[i+3:]
		if strings.Contains(tail, ":") || !strings.Contains(tail, ".") {
			return netip.Addr{}, 0, "\":::\" not followed by an IPv4 address", ErrBadIPv6
		}
		text = text[:i] + "::" + tail
		q |= QuirkThreeColons
	}
	a, err := netip.ParseAddr(text)
	if err != nil || !a.Is6() {
		detail := ""
		if err != nil {
			detail = strings.TrimPrefix(err.Error(), "ParseAddr("+strconv.Quote(text)+"): ")
		}
		return netip.Addr{}, 0, detail, ErrBadIPv6
	}
	if zone != "" {
		a = a.WithZone(zone)
	}
	return a, q, "", nil
}

// unescapeZone decodes an RFC 6874 ZoneID (after "%25") or, tolerated, a
// raw zone after a bare "%". ZoneID = 1*( unreserved / pct-encoded ).
func unescapeZone(s string) (zone string, raw bool, detail string) {
	if strings.HasPrefix(s, "25") {
		s = s[2:]
	} else {
		raw = true
	}
	if s == "" {
		return "", raw, "empty"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if v <= ' ' || v >= 0x7f || v == '%' {
				return "", raw, "escaped byte " + s[i:i+3] + " not allowed"
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", raw, "character " + strconv.QuoteRune(rune(c)) + " not allowed"
		}
	}
	return b.String(), raw, ""
}

// escapeZone writes a zone as an RFC 6874 ZoneID.
func escapeZone(z string) string {
	var b strings.Builder
	for i := 0; i < len(z); i++ {
		if c := z[i]; isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
		}
	}
	return b.String()
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }
func isHex(c byte) bool   { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

// isUnreserved is RFC 3986 §2.3 unreserved.
func isUnreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
}
