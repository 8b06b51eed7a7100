package siplocate

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadURI wraps every error ParseURI returns.
var ErrBadURI = errors.New("siplocate: bad URI")

// ErrUnsupportedTransport means the URI asks for a transport this package
// cannot use (sctp, ws, dtls...) or one its scheme does not allow
// (sips:...;transport=udp).
var ErrUnsupportedTransport = errors.New("siplocate: unsupported transport")

// Scheme is a URI scheme this package locates servers for.
type Scheme uint8

// The schemes: SIP (RFC 3261, located per RFC 3263), TURN (RFC 7065,
// located per RFC 5928) and STUN (RFC 7064, located per RFC 8489 §8).
const (
	SchemeSIP Scheme = iota + 1
	SchemeSIPS
	SchemeTURN
	SchemeTURNS
	SchemeSTUN
	SchemeSTUNS
)

var schemeNames = [...]string{SchemeSIP: "sip", SchemeSIPS: "sips", SchemeTURN: "turn", SchemeTURNS: "turns", SchemeSTUN: "stun", SchemeSTUNS: "stuns"}

// String returns the scheme as written in URIs, e.g. "sips".
func (s Scheme) String() string {
	if int(s) < len(schemeNames) && schemeNames[s] != "" {
		return schemeNames[s]
	}
	return "Scheme(" + strconv.Itoa(int(s)) + ")"
}

// Secure reports whether the scheme requires TLS (sips, turns, stuns).
func (s Scheme) Secure() bool { return s == SchemeSIPS || s == SchemeTURNS || s == SchemeSTUNS }

// URI is the part of a SIP, TURN or STUN URI that server location reads.
type URI struct {
	Scheme Scheme
	// Host is the URI's host, lower-cased, without brackets or trailing
	// dot. It is also the identity a TLS server must prove (RFC 5922 §4,
	// RFC 7065 §3).
	Host string
	// Addr is Host as an address when Host is an IP literal (RFC 3263
	// §4.2: a numeric host needs no DNS).
	Addr netip.Addr
	// Port is the explicit port; 0 when the URI has none.
	Port uint16
	// Transport is the transport= parameter (SIP) or ?transport= query
	// (TURN), mapped to what runs on the wire: sips: with transport=tcp is
	// TLS. Zero when absent.
	Transport Transport
	// MAddr is the SIP maddr parameter, lower-cased; when set it replaces
	// Host as the name to resolve (RFC 3263 §4).
	MAddr string
}

// target is the name or address RFC 3263 §4 calls TARGET.
func (u URI) target() (string, netip.Addr) {
	if u.MAddr != "" {
		a, _ := netip.ParseAddr(u.MAddr)
		return u.MAddr, a
	}
	return u.Host, u.Addr
}

// String writes u back as a URI (without user part or other parameters).
func (u URI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme.String())
	b.WriteByte(':')
	if u.Addr.Is6() {
		b.WriteString("[" + u.Host + "]")
	} else {
		b.WriteString(u.Host)
	}
	if u.Port != 0 {
		b.WriteString(":" + strconv.Itoa(int(u.Port)))
	}
	tp := u.Transport.String()
	if u.Transport == TLS && u.Scheme.Secure() {
		tp = "tcp" // sips:/turns: say tcp and mean TLS over it
	}
	switch u.Scheme {
	case SchemeSIP, SchemeSIPS:
		if u.Transport != 0 {
			b.WriteString(";transport=" + tp)
		}
		if a, err := netip.ParseAddr(u.MAddr); err == nil && a.Is6() {
			b.WriteString(";maddr=[" + u.MAddr + "]")
		} else if u.MAddr != "" {
			b.WriteString(";maddr=" + u.MAddr)
		}
	case SchemeTURN, SchemeTURNS:
		if u.Transport != 0 {
			b.WriteString("?transport=" + tp)
		}
	}
	return b.String()
}

// maxURILen bounds what ParseURI reads; RFC 3261 sets no limit, but a URI
// that long is an attack, not an address.
const maxURILen = 4096

// ParseURI parses a sip:, sips:, turn:, turns:, stun: or stuns: URI. For SIP
// it reads the host, port and the transport and maddr parameters and skips
// the user part, other parameters and headers; for TURN the host, port and
// ?transport=; STUN URIs take no query (RFC 7064 §3.1).
func ParseURI(s string) (URI, error) {
	u, err := parseURI(s)
	if err != nil {
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return URI{}, fmt.Errorf("%w %q: %w", ErrBadURI, s, err)
	}
	return u, nil
}

func parseURI(s string) (URI, error) {
	var u URI
	if len(s) > maxURILen {
		return u, fmt.Errorf("longer than %d bytes", maxURILen)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return u, errors.New("no scheme")
	}
	switch strings.ToLower(scheme) {
	case "sip":
		u.Scheme = SchemeSIP
	case "sips":
		u.Scheme = SchemeSIPS
	case "turn":
		u.Scheme = SchemeTURN
	case "turns":
		u.Scheme = SchemeTURNS
	case "stun":
		u.Scheme = SchemeSTUN
	case "stuns":
		u.Scheme = SchemeSTUNS
	default:
		return u, fmt.Errorf("unknown scheme %q", scheme)
	}
	if strings.HasPrefix(rest, "//") {
		return u, errors.New(`no "//" after the scheme (RFC 3261 §19.1, RFC 7065 §3)`)
	}

	var hostport, params string
	switch u.Scheme {
	case SchemeSIP, SchemeSIPS:
		// userinfo cannot hold an unescaped "@" (RFC 3261 §25.1), so the
		// first one ends it; ";" and "?" may appear inside userinfo.
		if i := strings.IndexByte(rest, '@'); i >= 0 {
			if i == 0 {
				return u, errors.New("empty user part before @")
			}
			rest = rest[i+1:]
		}
		if i := strings.IndexByte(rest, '?'); i >= 0 {
			rest = rest[:i] // headers play no part in location
		}
		hostport, params, _ = strings.Cut(rest, ";")
	default:
		if strings.ContainsRune(rest, '@') {
			return u, errors.New("TURN and STUN URIs have no user part")
		}
		hostport, params, _ = strings.Cut(rest, "?")
		if params != "" && (u.Scheme == SchemeSTUN || u.Scheme == SchemeSTUNS) {
			return u, errors.New("STUN URIs take no query (RFC 7064 §3.1)")
		}
	}
	if err := parseHostPort(&u, hostport); err != nil {
		return u, err
	}
	if err := parseParams(&u, params); err != nil {
		return u, err
	}
	return u, nil
}

func parseHostPort(u *URI, hp string) error {
	if hp == "" {
		return errors.New("no host")
	}
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return errors.New("unclosed [ in IPv6 reference")
		}
		host = hp[1:end]
		switch after := hp[end+1:]; {
		case after == "":
		case after[0] == ':':
			port = after[1:]
			if port == "" {
				return errors.New("empty port")
			}
		default:
			return fmt.Errorf("junk %q after IPv6 reference", after)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("bad IPv6 reference [%s]", host)
		}
		if a.Is4In6() {
			// ::ffff:a.b.c.d names an IPv4 host; RFC 5118 §4.3 warns
			// that senders use it, so locate it as the IPv4 it is.
			a = a.Unmap()
		}
		u.Addr = a
		u.Host = a.String()
	} else {
		if i := strings.LastIndexByte(hp, ':'); i >= 0 {
			host, port = hp[:i], hp[i+1:]
			if port == "" {
				return errors.New("empty port")
			}
		}
		if strings.ContainsRune(host, ':') {
			return fmt.Errorf("IPv6 address %q must be in brackets (RFC 5118 §4.1)", host)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			u.Addr = a
			u.Host = a.String()
		} else {
			name, err := checkHostname(host)
			if err != nil {
				return err
			}
			u.Host = name
			if a, err := netip.ParseAddr(name); err == nil {
				u.Addr = a // "192.0.2.1." is still numeric
				u.Host = a.String()
			}
		}
	}
	if port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 || port[0] == '+' {
			return fmt.Errorf("bad port %q", port)
		}
		u.Port = uint16(p)
	}
	return nil
}

// checkHostname validates an RFC 3261 §25.1 hostname and returns it in
// canonical form: lower case, no trailing dot.
func checkHostname(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("no host")
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name longer than 253 bytes")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad host name %q: empty or over-long label", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad host name %q: label starts or ends with '-'", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			// "_" is not in RFC 3261's grammar but occurs in real zones;
			// DNS itself takes any byte, so only what a URI cannot carry
			// unescaped is refused.
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad host name %q: character %q", h, c)
			}
		}
	}
	return strings.ToLower(h), nil
}

// parseParams reads transport= and maddr= from SIP URI parameters
// (";"-separated) or transport= from a TURN query ("&"-separated).
func parseParams(u *URI, params string) error {
	if params == "" {
		return nil
	}
	sep := ";"
	if u.Scheme == SchemeTURN || u.Scheme == SchemeTURNS {
		sep = "&"
	}
	seen := map[string]bool{}
	for p := range strings.SplitSeq(params, sep) {
		name, value, _ := strings.Cut(p, "=")
		name = strings.ToLower(name)
		switch name {
		case "transport", "maddr":
		default:
			if sep == "&" {
				return fmt.Errorf("unknown TURN URI query %q (RFC 7065 §3)", p)
			}
			continue // other SIP parameters (user=, lr, ...) do not affect location
		}
		if seen[name] {
			return fmt.Errorf("duplicate %s parameter", name)
		}
		seen[name] = true
		if name == "maddr" {
			if sep == "&" {
				return errors.New("maddr is a SIP URI parameter")
			}
			if err := parseMAddr(u, value); err != nil {
				return err
			}
			continue
		}
		t, err := parseTransport(u.Scheme, strings.ToLower(value))
		if err != nil {
			return err
		}
		u.Transport = t
	}
	return nil
}

func parseMAddr(u *URI, v string) error {
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		a, err := netip.ParseAddr(v[1 : len(v)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("bad maddr %q", v)
		}
		u.MAddr = a.Unmap().String()
		return nil
	}
	if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
		u.MAddr = a.String()
		return nil
	}
	name, err := checkHostname(v)
	if err != nil {
		return fmt.Errorf("bad maddr: %w", err)
	}
	u.MAddr = name
	return nil
}

func parseTransport(s Scheme, v string) (Transport, error) {
	var t Transport
	switch v {
	case "udp":
		t = UDP
	case "tcp":
		t = TCP
	case "tls":
		if s != SchemeSIP && s != SchemeSIPS {
			return 0, fmt.Errorf("%w: %q in a %s URI (RFC 7065 §3 allows udp, tcp)", ErrUnsupportedTransport, v, s)
		}
		t = TLS // RFC 3261 §26.2.2 deprecated, but still sent
	case "":
		return 0, errors.New("empty transport")
	default:
		return 0, fmt.Errorf("%w: %q", ErrUnsupportedTransport, v)
	}
	if s.Secure() {
		if t == UDP {
			// sips: never runs over UDP (RFC 5630 §3.1.3); turns: over
			// UDP is DTLS (RFC 7350), which this package does not do.
			return 0, fmt.Errorf("%w: %s URI with transport=udp", ErrUnsupportedTransport, s)
		}
		t = TLS
	}
	return t, nil
}
