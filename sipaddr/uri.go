package sipaddr

import (
	"strconv"
	"strings"
)

// MaxURILen bounds the URIs this package reads; longer ones are refused
// before any other work.
const MaxURILen = 8192

// Param is one ";name[=value]" of a URI or a header, as written.
type Param struct {
	Name     string
	Value    string
	HasValue bool // "lr" versus "lr=" would differ; "tag=x" has one
}

func (p Param) String() string {
	if !p.HasValue {
		return p.Name
	}
	return p.Name + "=" + p.Value
}

// findParam returns the first parameter named name (case-insensitive).
func findParam(ps []Param, name string) (string, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// URI is a sip: or sips: URI split as RFC 3261 §19.1.1 and §25.1 do:
// sip:user:password@hostport;uri-parameters?headers. It is enough to read
// a Request-URI, To/From/Contact and Route/Record-Route; user, parameters
// and headers are kept as written (escaped), only the hosts are decoded.
type URI struct {
	Scheme   string // "sip" or "sips", lower case
	User     string // "" when the URI has no userinfo
	Password string
	HostPort HostPort
	Params   []Param
	Headers  string // after "?", as written; "" when none
}

// ParseURI reads a sip: or sips: URI. The host must be a hostname, an IPv4
// address or a bracketed IPv6 reference (ErrUnbracketedIPv6 for
// "sip:2001:db8::10", RFC 5118 §4.2); a maddr parameter is checked the
// same way. Another scheme is ErrNotSIPURI.
func ParseURI(s string) (URI, error) {
	if len(s) > MaxURILen {
		return URI{}, newError("URI", s[:64]+"...", ErrBadURI, "longer than "+strconv.Itoa(MaxURILen)+" bytes")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return URI{}, newError("URI", s, ErrBadURI, "white space or control character")
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !isScheme(s[:colon]) {
		return URI{}, newError("URI", s, ErrBadURI, "no scheme")
	}
	u := URI{Scheme: strings.ToLower(s[:colon])}
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return URI{}, newError("URI", s, ErrNotSIPURI, "")
	}
	rest := s[colon+1:]
	// '@' is allowed nowhere but as the end of userinfo (user, password,
	// parameters and headers escape it), so it splits unambiguously even
	// though the user part may contain ';' and '?'.
	switch strings.Count(rest, "@") {
	case 0:
	case 1:
		at := strings.IndexByte(rest, '@')
		user, pass, hasPass := strings.Cut(rest[:at], ":")
		if user == "" {
			return URI{}, newError("URI", s, ErrBadURI, "empty user before '@'")
		}
		if detail := checkChars(user, isUserChar); detail != "" {
			return URI{}, newError("URI", s, ErrBadURI, "user: "+detail)
		}
		if hasPass {
			if detail := checkChars(pass, isPasswordChar); detail != "" {
				return URI{}, newError("URI", s, ErrBadURI, "password: "+detail)
			}
		}
		u.User, u.Password = user, pass
		rest = rest[at+1:]
	default:
		return URI{}, newError("URI", s, ErrBadURI, "more than one '@'")
	}

	end := strings.IndexAny(rest, ";?")
	if end < 0 {
		end = len(rest)
	}
	hp, err := ParseHostPort(rest[:end])
	if err != nil {
		e := err.(*Error)
		return URI{}, newError("URI host", rest[:end], e.Err, e.Detail)
	}
	u.HostPort = hp
	rest = rest[end:]

	params, headers, _ := strings.Cut(rest, "?")
	if params != "" {
		for _, item := range strings.Split(params[1:], ";") {
			p, err := parseURIParam(s, item)
			if err != nil {
				return URI{}, err
			}
			u.Params = append(u.Params, p)
		}
	}
	if strings.Contains(rest, "?") {
		if headers == "" {
			return URI{}, newError("URI", s, ErrBadURI, "empty headers after '?'")
		}
		if detail := checkChars(headers, isHeaderChar); detail != "" {
			return URI{}, newError("URI", s, ErrBadURI, "headers: "+detail)
		}
		u.Headers = headers
	}
	return u, nil
}

// parseURIParam reads one uri-parameter and checks the ones that carry
// hosts or numbers (RFC 3261 §19.1.1 Table 1).
func parseURIParam(uri, item string) (Param, error) {
	name, value, hasValue := strings.Cut(item, "=")
	p := Param{Name: name, Value: value, HasValue: hasValue}
	if name == "" {
		return Param{}, newError("URI", uri, ErrBadParam, "empty parameter name")
	}
	if detail := checkChars(name, isParamChar); detail != "" {
		return Param{}, newError("URI", uri, ErrBadParam, name+": "+detail)
	}
	if detail := checkChars(value, isParamChar); detail != "" {
		return Param{}, newError("URI", uri, ErrBadParam, name+": "+detail)
	}
	switch strings.ToLower(name) {
	case "maddr":
		if _, err := ParseHost(value); err != nil {
			e := err.(*Error)
			return Param{}, newError("maddr", value, e.Err, e.Detail)
		}
	case "ttl":
		if n, err := strconv.Atoi(value); err != nil || n < 0 || n > 255 || len(value) > 3 {
			return Param{}, newError("URI", uri, ErrBadParam, "ttl="+value+" is not 0-255")
		}
	case "transport", "user", "method":
		if !isToken(value) {
			return Param{}, newError("URI", uri, ErrBadParam, name+"="+value+" is not a token")
		}
	}
	return p, nil
}

// ParseURIHost returns the host and port of a sip: or sips: URI.
func ParseURIHost(s string) (HostPort, error) {
	u, err := ParseURI(s)
	if err != nil {
		return HostPort{}, err
	}
	return u.HostPort, nil
}

// Param returns the first URI parameter named name (case-insensitive).
func (u URI) Param(name string) (string, bool) { return findParam(u.Params, name) }

// MAddr returns the maddr parameter's host, checked by ParseURI.
func (u URI) MAddr() (Host, bool) {
	v, ok := u.Param("maddr")
	if !ok {
		return Host{}, false
	}
	h, err := ParseHost(v)
	return h, err == nil
}

// DefaultPort is the port used when the URI names none: 5061 for sips,
// 5060 for sip (RFC 3261 §19.1.2).
func (u URI) DefaultPort() uint16 {
	if u.Scheme == "sips" {
		return 5061
	}
	return 5060
}

// String writes the URI; an IPv6 host always in brackets.
func (u URI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	if u.User != "" {
		b.WriteString(u.User)
		if u.Password != "" {
			b.WriteByte(':')
			b.WriteString(u.Password)
		}
		b.WriteByte('@')
	}
	b.WriteString(u.HostPort.String())
	for _, p := range u.Params {
		b.WriteByte(';')
		b.WriteString(p.String())
	}
	if u.Headers != "" {
		b.WriteByte('?')
		b.WriteString(u.Headers)
	}
	return b.String()
}

// isScheme is RFC 3986 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// checkChars checks s against allowed, with "%" HEXDIG HEXDIG escapes, and
// returns why not ("" when fine).
func checkChars(s string, allowed func(byte) bool) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "'%' not followed by two hex digits"
			}
			i += 2
			continue
		}
		if !allowed(c) {
			return "character " + strconv.QuoteRune(rune(c)) + " not allowed"
		}
	}
	return ""
}

// isMark is RFC 3261 mark; unreserved = alphanum / mark.
func isMark(c byte) bool { return strings.IndexByte("-_.!~*'()", c) >= 0 }

func isURIUnreserved(c byte) bool { return isAlnum(c) || isMark(c) }

// isUserChar: unreserved / user-unreserved ("&=+$,;?/").
func isUserChar(c byte) bool { return isURIUnreserved(c) || strings.IndexByte("&=+$,;?/", c) >= 0 }

// isPasswordChar: unreserved / "&" / "=" / "+" / "$" / ",".
func isPasswordChar(c byte) bool { return isURIUnreserved(c) || strings.IndexByte("&=+$,", c) >= 0 }

// isParamChar: unreserved / param-unreserved ("[]/:&+$").
func isParamChar(c byte) bool { return isURIUnreserved(c) || strings.IndexByte("[]/:&+$", c) >= 0 }

// isHeaderChar: unreserved / hnv-unreserved ("[]/?:+$") and the "=" and
// "&" that separate headers.
func isHeaderChar(c byte) bool { return isURIUnreserved(c) || strings.IndexByte("[]/?:+$=&", c) >= 0 }

// isTokenChar is RFC 3261 token: alphanum / "-" / "." / "!" / "%" / "*" /
// "_" / "+" / "`" / "'" / "~".
func isTokenChar(c byte) bool { return isAlnum(c) || strings.IndexByte("-.!%*_+`'~", c) >= 0 }

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}
