package sipaddr

import (
	"strconv"
	"strings"
)

// Via is one via-parm of a Via header (RFC 3261 §20.42, RFC 3581):
// "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::9;rport".
type Via struct {
	Protocol  string   // protocol-name "/" protocol-version, e.g. "SIP/2.0"
	Transport string   // e.g. "UDP", as written
	SentBy    HostPort // the sender's host and port, IPv6 in brackets
	Branch    string   // "" when absent
	Received  Host     // zero when absent; always an IP literal
	RPort     uint16   // rport=N; 0 when absent or empty
	HasRPort  bool     // rport present, with or without a value
	// Params are the other parameters (maddr, ttl, extensions), in order.
	Params []Param
}

// ParseVia reads one via-parm. sent-by must bracket an IPv6 address;
// received may be written with or without brackets (RFC 5118 §4.5; the
// bracketed form is marked QuirkBracketedReceived); maddr must be a host
// and ttl 0-255.
func ParseVia(s string) (Via, error) {
	in := s
	var v Via
	rest := trimLWS(s)
	var fields [3]string
	for i := range fields {
		j := 0
		for j < len(rest) && isTokenChar(rest[j]) {
			j++
		}
		if j == 0 {
			return Via{}, newError("Via", in, ErrBadVia, "sent-protocol is not name/version/transport")
		}
		fields[i] = rest[:j]
		rest = rest[j:]
		if i < 2 {
			rest = trimLWS(rest)
			if !strings.HasPrefix(rest, "/") {
				return Via{}, newError("Via", in, ErrBadVia, "sent-protocol is not name/version/transport")
			}
			rest = trimLWS(rest[1:])
		}
	}
	v.Protocol = fields[0] + "/" + fields[1]
	v.Transport = fields[2]
	if rest == "" || !isLWS(rune(rest[0])) {
		return Via{}, newError("Via", in, ErrBadVia, "no white space between sent-protocol and sent-by")
	}
	rest = trimLWS(rest)
	sentBy, params, hasParams := strings.Cut(rest, ";")
	sentBy, err := joinColon(trimLWS(sentBy))
	if err != "" {
		return Via{}, newError("Via", in, ErrBadVia, "sent-by: "+err)
	}
	hp, perr := ParseHostPort(sentBy)
	if perr != nil {
		e := perr.(*Error)
		return Via{}, newError("Via sent-by", sentBy, e.Err, e.Detail)
	}
	v.SentBy = hp
	if !hasParams {
		return v, nil
	}
	items, ok := splitOutsideQuotes(params, ';')
	if !ok {
		return Via{}, newError("Via", in, ErrBadParam, "unterminated quoted string")
	}
	for _, item := range items {
		name, value, hasValue := strings.Cut(item, "=")
		name, value = trimLWS(name), trimLWS(value)
		if !isToken(name) {
			return Via{}, newError("Via", in, ErrBadParam, "parameter name "+strconv.Quote(name)+" is not a token")
		}
		switch strings.ToLower(name) {
		case "received":
			h, err := ParseReceived(value)
			if err != nil {
				return Via{}, err
			}
			v.Received = h
		case "rport":
			v.HasRPort = true
			if hasValue {
				p, detail := parsePort(value)
				if detail != "" {
					return Via{}, newError("Via", in, ErrBadParam, "rport: "+detail)
				}
				v.RPort = p
			}
		case "branch":
			if !isToken(value) {
				return Via{}, newError("Via", in, ErrBadParam, "branch "+strconv.Quote(value)+" is not a token")
			}
			v.Branch = value
		case "maddr":
			if _, err := ParseHost(value); err != nil {
				e := err.(*Error)
				return Via{}, newError("maddr", value, e.Err, e.Detail)
			}
			v.Params = append(v.Params, Param{Name: name, Value: value, HasValue: hasValue})
		case "ttl":
			if n, err := strconv.Atoi(value); err != nil || n < 0 || n > 255 || len(value) > 3 {
				return Via{}, newError("Via", in, ErrBadParam, "ttl="+value+" is not 0-255")
			}
			v.Params = append(v.Params, Param{Name: name, Value: value, HasValue: hasValue})
		default:
			if hasValue && !isGenValue(value) {
				return Via{}, newError("Via", in, ErrBadParam, "parameter "+name+": value "+strconv.Quote(value)+" is not a token, host or quoted string")
			}
			v.Params = append(v.Params, Param{Name: name, Value: value, HasValue: hasValue})
		}
	}
	return v, nil
}

// joinColon removes the white space RFC 3261's COLON (SWS ":" SWS) allows
// around the port of a sent-by, and refuses any other white space.
func joinColon(s string) (string, string) {
	if !strings.ContainsAny(s, " \t") {
		return s, ""
	}
	head, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
		head, port = trimLWS(s[:i]), ":"+trimLWS(s[i+1:])
	}
	if strings.ContainsAny(head+port, " \t") {
		return "", "white space inside " + strconv.Quote(s)
	}
	return head + port, ""
}

// ParseViaList reads a whole Via header value: via-parms separated by
// commas.
func ParseViaList(s string) ([]Via, error) {
	parts, err := SplitList(s)
	if err != nil {
		return nil, err
	}
	vias := make([]Via, 0, len(parts))
	for _, p := range parts {
		v, err := ParseVia(p)
		if err != nil {
			return nil, err
		}
		vias = append(vias, v)
	}
	return vias, nil
}

// ParseReceived reads the value of a Via received parameter: an IPv4
// address, or an IPv6 address with or without brackets. RFC 3261 §20.42's
// via-received has no brackets, but senders write both and RFC 5118 §4.5
// asks receivers to accept both; the bracketed form is marked
// QuirkBracketedReceived. A zone is read as in a host.
func ParseReceived(s string) (Host, error) {
	if s == "" {
		return Host{}, newError("received", s, ErrEmpty, "")
	}
	if len(s) > MaxHostLen {
		return Host{}, newError("received", s[:32]+"...", ErrNotIP, "too long")
	}
	inner, q := s, Quirk(0)
	if s[0] == '[' {
		if s[len(s)-1] != ']' || strings.Count(s, "]") != 1 {
			return Host{}, newError("received", s, ErrBrackets, "")
		}
		inner, q = s[1:len(s)-1], QuirkBracketedReceived
	} else if strings.ContainsAny(s, "[]") {
		return Host{}, newError("received", s, ErrBrackets, "")
	}
	if !strings.Contains(inner, ":") {
		if q != 0 {
			return Host{}, newError("received", s, ErrIPv4InBrackets, "")
		}
		if !isDottedDecimal(s) {
			return Host{}, newError("received", s, ErrNotIP, "")
		}
		h, err := parseBareHost("received", s)
		return h, err
	}
	a, aq, detail, sentinel := parseIPv6Ref(inner)
	if sentinel != nil {
		return Host{}, newError("received", s, sentinel, detail)
	}
	return Host{addr: a, quirks: q | aq}, nil
}

// String writes the via-parm: sent-by with IPv6 in brackets; received bare
// as RFC 3261's via-received grammar has it (every receiver must read that
// form, RFC 5118 §4.5) except a zoned address, which only the bracketed
// RFC 6874 form can carry.
func (v Via) String() string {
	var b strings.Builder
	b.WriteString(v.Protocol)
	b.WriteByte('/')
	b.WriteString(v.Transport)
	b.WriteByte(' ')
	b.WriteString(v.SentBy.String())
	if v.Branch != "" {
		b.WriteString(";branch=")
		b.WriteString(v.Branch)
	}
	for _, p := range v.Params {
		b.WriteByte(';')
		b.WriteString(p.String())
	}
	if v.Received.IsIP() {
		b.WriteString(";received=")
		b.WriteString(receivedText(v.Received))
	}
	if v.HasRPort {
		b.WriteString(";rport")
		if v.RPort != 0 {
			b.WriteByte('=')
			b.WriteString(strconv.Itoa(int(v.RPort)))
		}
	}
	return b.String()
}

func receivedText(h Host) string {
	a := h.Addr()
	if a.Is4() || a.Zone() != "" {
		return h.String()
	}
	return a.String()
}
