package sipaddr

import (
	"strconv"
	"strings"
)

// Address is one name-addr or addr-spec with its header parameters, the
// value of a From, To, Contact, Route or Record-Route (RFC 3261 §20.10,
// §25.1): `"Caller" <sip:caller@[2001:db8::1]>;tag=81x2`.
type Address struct {
	Display string // display-name as written, quotes kept; "" when none
	RawURI  string // the URI as written
	URI     URI    // the parsed URI when it is sip: or sips:
	Params  []Param
	// Wildcard is the "*" of a REGISTER Contact (RFC 3261 §10.2.2).
	Wildcard bool
}

// IsSIP reports whether the address carries a sip: or sips: URI (other
// schemes, e.g. tel:, are kept as RawURI only).
func (a Address) IsSIP() bool { return a.URI.Scheme != "" }

// Param returns the first header parameter named name (case-insensitive).
func (a Address) Param(name string) (string, bool) { return findParam(a.Params, name) }

// ParseAddress reads one name-addr or addr-spec with its parameters. In the
// addr-spec form (no "<>") the URI ends at the first ";": what follows are
// header parameters (RFC 3261 §20.10). A sip: or sips: URI is parsed with
// ParseURI, so its host is checked; another scheme is only checked to look
// like an absolute URI.
func ParseAddress(s string) (Address, error) {
	in := s
	s = trimLWS(s)
	if s == "" {
		return Address{}, newError("address", in, ErrEmpty, "")
	}
	if s == "*" {
		return Address{Wildcard: true}, nil
	}
	var a Address
	var rest string
	lt := -1
	if s[0] == '"' {
		end, ok := quotedEnd(s)
		if !ok {
			return Address{}, newError("address", in, ErrBadAddress, "unterminated quoted display name")
		}
		a.Display = s[:end]
		s = trimLWS(s[end:])
		if !strings.HasPrefix(s, "<") {
			return Address{}, newError("address", in, ErrBadAddress, "quoted display name not followed by '<'")
		}
		lt = 0
	} else {
		lt = strings.IndexByte(s, '<')
		if lt > 0 {
			a.Display = trimLWS(s[:lt])
			for _, w := range strings.FieldsFunc(a.Display, isLWS) {
				if !isToken(w) {
					return Address{}, newError("address", in, ErrBadAddress, "display name "+strconv.Quote(a.Display)+" is neither tokens nor a quoted string")
				}
			}
		}
	}
	if lt >= 0 {
		gt := strings.IndexByte(s[lt:], '>')
		if gt < 0 {
			return Address{}, newError("address", in, ErrBadAddress, "'<' without '>'")
		}
		a.RawURI = s[lt+1 : lt+gt]
		rest = s[lt+gt+1:]
	} else {
		uri, params, _ := strings.Cut(s, ";")
		a.RawURI = trimLWS(uri)
		if params != "" || strings.HasSuffix(s, ";") {
			rest = ";" + params
		}
		if strings.ContainsAny(a.RawURI, ",>") {
			return Address{}, newError("address", in, ErrBadAddress, "'>' or ',' outside '<...>'")
		}
	}
	if err := a.readURI(); err != nil {
		return Address{}, err
	}
	ps, err := parseHeaderParams("address", in, rest)
	if err != nil {
		return Address{}, err
	}
	a.Params = ps
	return a, nil
}

func (a *Address) readURI() error {
	raw := a.RawURI
	colon := strings.IndexByte(raw, ':')
	if colon <= 0 || !isScheme(raw[:colon]) || colon == len(raw)-1 {
		return newError("address", raw, ErrBadAddress, "not a URI")
	}
	scheme := strings.ToLower(raw[:colon])
	if scheme != "sip" && scheme != "sips" {
		if strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '"' }) >= 0 {
			return newError("address", raw, ErrBadAddress, "white space or '<>\"' in URI")
		}
		return nil
	}
	u, err := ParseURI(raw)
	if err != nil {
		return err
	}
	a.URI = u
	return nil
}

// String writes the address in name-addr form ("<...>"), which is always
// safe (RFC 3261 §20.10), with an IPv6 host in brackets.
func (a Address) String() string {
	if a.Wildcard {
		return "*"
	}
	var b strings.Builder
	if a.Display != "" {
		b.WriteString(a.Display)
		b.WriteByte(' ')
	}
	b.WriteByte('<')
	if a.IsSIP() {
		b.WriteString(a.URI.String())
	} else {
		b.WriteString(a.RawURI)
	}
	b.WriteByte('>')
	for _, p := range a.Params {
		b.WriteByte(';')
		b.WriteString(p.String())
	}
	return b.String()
}

// parseHeaderParams reads *( SEMI generic-param ) where SEMI = SWS ";" SWS
// and a value is a token, a host (IPv6 reference included) or a quoted
// string (RFC 3261 §25.1 gen-value).
func parseHeaderParams(part, in, rest string) ([]Param, error) {
	rest = trimLWS(rest)
	if rest == "" {
		return nil, nil
	}
	if rest[0] != ';' {
		return nil, newError(part, in, ErrBadParam, strconv.Quote(rest)+" where ';' or the end was expected")
	}
	items, ok := splitOutsideQuotes(rest[1:], ';')
	if !ok {
		return nil, newError(part, in, ErrBadParam, "unterminated quoted string")
	}
	var ps []Param
	for _, item := range items {
		p, detail := parseGenericParam(item)
		if detail != "" {
			return nil, newError(part, in, ErrBadParam, detail)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// parseGenericParam reads token [ EQUAL gen-value ].
func parseGenericParam(item string) (Param, string) {
	name, value, hasValue := strings.Cut(item, "=")
	name, value = trimLWS(name), trimLWS(value)
	if !isToken(name) {
		return Param{}, "parameter name " + strconv.Quote(name) + " is not a token"
	}
	p := Param{Name: name, Value: value, HasValue: hasValue}
	if hasValue && !isGenValue(value) {
		return Param{}, "parameter " + name + ": value " + strconv.Quote(value) + " is not a token, host or quoted string"
	}
	return p, ""
}

// isGenValue is gen-value = token / host / quoted-string.
func isGenValue(v string) bool {
	if isToken(v) {
		return true
	}
	if strings.HasPrefix(v, `"`) {
		end, ok := quotedEnd(v)
		return ok && end == len(v)
	}
	_, err := ParseHost(v)
	return err == nil
}

// quotedEnd returns the index just past the quoted-string s starts with.
func quotedEnd(s string) (int, bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// splitOutsideQuotes splits s at sep bytes that are not inside a quoted
// string; ok is false when a quote is left open.
func splitOutsideQuotes(s string, sep byte) (parts []string, ok bool) {
	start, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if inQuote {
		return nil, false
	}
	return append(parts, s[start:]), true
}

// SplitList splits a header value at the commas that separate its elements
// (RFC 3261 §7.3.1), not at commas inside quoted strings or "<...>". It
// fails on an open quote or "<"; elements are trimmed of LWS.
func SplitList(s string) ([]string, error) {
	var parts []string
	start, inQuote, inAngle := 0, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"' && !inAngle:
			inQuote = !inQuote
		case inQuote:
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == ',' && !inAngle:
			parts = append(parts, trimLWS(s[start:i]))
			start = i + 1
		}
	}
	if inQuote || inAngle {
		return nil, newError("list", s, ErrBadAddress, "unterminated quoted string or '<'")
	}
	return append(parts, trimLWS(s[start:])), nil
}

func isLWS(r rune) bool { return r == ' ' || r == '\t' }

// trimLWS trims spaces and tabs (folded lines are unfolded before parsing).
func trimLWS(s string) string { return strings.Trim(s, " \t") }
