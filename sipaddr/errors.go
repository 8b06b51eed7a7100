package sipaddr

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Every parse error is an *Error that wraps one of these, so
// callers branch with errors.Is and still get the input and the detail.
var (
	// ErrEmpty: nothing where a host, port or URI was expected.
	ErrEmpty = errors.New("empty")
	// ErrUnbracketedIPv6: an IPv6 address where RFC 3261 §25.1 requires an
	// IPv6reference ("[" IPv6address "]"), e.g. "sip:2001:db8::10". RFC 5118
	// §4.2: a request with one in its Request-URI gets 400 Bad Request.
	ErrUnbracketedIPv6 = errors.New("IPv6 reference without brackets")
	// ErrBadIPv6: what is inside "[...]" is not an IPv6 address ("[zzzz]",
	// "[]", IPvFuture, a bad zone).
	ErrBadIPv6 = errors.New("invalid IPv6 reference")
	// ErrIPv4InBrackets: "[192.0.2.1]". Brackets hold IPv6 only (RFC 3986
	// §3.2.2 IP-literal, RFC 3261 §25.1 IPv6reference).
	ErrIPv4InBrackets = errors.New("IPv4 address inside brackets")
	// ErrBrackets: "[" without "]", "]" without "[", or brackets inside a name.
	ErrBrackets = errors.New("unbalanced brackets")
	// ErrAfterBracket: something other than ":port" after "]", e.g.
	// "[2001:db8::1]x" or "[2001:db8::1]5060".
	ErrAfterBracket = errors.New("junk after ']'")
	// ErrBadIPv4: a dotted-decimal host that is not an IPv4 address
	// ("192.0.2.256", "01.2.3.4").
	ErrBadIPv4 = errors.New("invalid IPv4 address")
	// ErrBadHostname: not a hostname by RFC 3261 §25.1 (labels of letters,
	// digits and inner hyphens; the top label starts with a letter).
	ErrBadHostname = errors.New("invalid hostname")
	// ErrBadPort: a port that is not 1 to 65535 written in decimal.
	ErrBadPort = errors.New("invalid port")
	// ErrPortNotAllowed: a ":port" where only a host may appear (maddr).
	ErrPortNotAllowed = errors.New("port not allowed here")
	// ErrNotIP: a hostname where only an IP address may appear (received).
	ErrNotIP = errors.New("not an IP address")
	// ErrNotSIPURI: a URI whose scheme is not sip or sips.
	ErrNotSIPURI = errors.New("not a sip: or sips: URI")
	// ErrBadURI: a SIP URI that breaks RFC 3261 §25.1 outside its host.
	ErrBadURI = errors.New("invalid SIP URI")
	// ErrBadVia: a Via value that breaks RFC 3261 §20.42 outside its hosts.
	ErrBadVia = errors.New("invalid Via")
	// ErrBadAddress: a name-addr or addr-spec (From, To, Contact, Route)
	// that breaks RFC 3261 §25.1 outside its URI.
	ErrBadAddress = errors.New("invalid address")
	// ErrBadParam: a header or URI parameter with an invalid name or value.
	ErrBadParam = errors.New("invalid parameter")
)

// Error is a parse failure: what was read (Part: "host", "hostport",
// "URI", "Via", "received", "maddr", "address"), the input, the sentinel
// and, when it helps, a detail.
type Error struct {
	Part   string
	Input  string
	Err    error // one of the sentinels above
	Detail string
}

func (e *Error) Error() string {
	return "sipaddr: " + e.Part + " " + strconv.Quote(e.Input) + ": " + e.Reason()
}

// Reason is the error without the "sipaddr: part input" prefix, e.g.
// "IPv6 reference without brackets".
func (e *Error) Reason() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

func newError(part, input string, err error, detail string) *Error {
	return &Error{Part: part, Input: input, Err: err, Detail: detail}
}

// Quirk is a set of deviations from RFC 3261's grammar that RFC 5118 (or
// RFC 6874) asks a receiver to tolerate. A parsed Host carries the quirks
// its text had, so a checker can say what it tolerated; writers never
// produce them.
type Quirk uint8

const (
	// QuirkThreeColons: "[2001:db8:::192.0.2.1]", three colons before an
	// embedded IPv4 address. RFC 3261's IPv6address ABNF (inherited from
	// RFC 2373) derives it, RFC 4291 does not; RFC 5118 §4.10 says an
	// implementation must tolerate both. It is read as "2001:db8::192.0.2.1".
	QuirkThreeColons Quirk = 1 << iota
	// QuirkBracketedReceived: "received=[2001:db8::9:255]". RFC 3261's
	// via-received takes a bare IPv6address; RFC 5118 §4.5 says accept both.
	QuirkBracketedReceived
	// QuirkRawZone: "[fe80::1%eth0]", a zone after a bare "%" instead of
	// RFC 6874's "%25". Read as the same zone.
	QuirkRawZone
)

// String names the quirks, comma-separated, with the RFC that allows them.
func (q Quirk) String() string {
	var parts []string
	if q&QuirkThreeColons != 0 {
		parts = append(parts, "three colons before the embedded IPv4 address (RFC 5118 §4.10)")
	}
	if q&QuirkBracketedReceived != 0 {
		parts = append(parts, "brackets around received (RFC 5118 §4.5)")
	}
	if q&QuirkRawZone != 0 {
		parts = append(parts, `zone after a bare "%" instead of "%25" (RFC 6874 §2)`)
	}
	return strings.Join(parts, ", ")
}
