// Package sipaddr is the one reader and writer of SIP hosts in Isthmus: the
// host and hostport of RFC 3261 §25.1, with the IPv6 rules of RFC 5118 and
// the IP-literal of RFC 3986 §3.2.2 (zones per RFC 6874), every address held
// as a net/netip.Addr.
//
// # Main types
//
//   - Host: a hostname, an IPv4 literal or an IPv6 literal (IPv4-mapped and
//     zoned included). ParseHost reads one; String always writes an IPv6
//     address in brackets.
//   - HostPort: host [":" port], ParseHostPort. The port of an IPv6 host is
//     outside "]".
//   - URI: a sip: or sips: URI split into user, password, hostport,
//     parameters and headers (ParseURI, ParseURIHost): enough for a
//     Request-URI, To/From/Contact and Route/Record-Route.
//   - Address: a name-addr or addr-spec with its header parameters
//     (ParseAddress); SplitList splits a comma list.
//   - Via: one via-parm, sent-by, branch, received, rport (ParseVia,
//     ParseViaList, ParseReceived).
//
// Every error is an *Error wrapping an exported sentinel (errors.Is):
// ErrUnbracketedIPv6, ErrBadIPv6, ErrAfterBracket, ErrBadPort, ...
//
// # RFC 5118 verdicts
//
//   - §4.2: "sip:2001:db8::10" is refused with ErrUnbracketedIPv6 (a UAS
//     answers 400).
//   - §4.3: "[2001:db8::10:5070]" is an address with no port: everything
//     inside the brackets is address; nothing is "repaired".
//   - §4.4: "[2001:db8::10]:5070" is that address and port 5070.
//   - §4.5: received= is read with and without brackets (the bracketed
//     form carries QuirkBracketedReceived) and written bare.
//   - §4.9: "[::ffff:192.0.2.1]" is an IPv6 host (Family IPv6) that stays
//     mapped and is written in brackets.
//   - §4.10: "[2001:db8:::192.0.2.1]", three colons before an embedded
//     IPv4 address are tolerated ("must tolerate both"), marked
//     QuirkThreeColons and written with two.
//   - Inside brackets only an IPv6 address is accepted: "[zzzz]",
//     "[192.0.2.1]" and "[2001:db8::1]x" are errors. A zone may follow
//     "%25" (RFC 6874) or, tolerated, a bare "%"; it is written "%25".
//
// Example:
//
//	hp, err := sipaddr.ParseURIHost("sip:bob@[2001:db8::10]:5070")
//	// hp.Host.Addr() == netip.MustParseAddr("2001:db8::10"), hp.Port == 5070
//
// # sipgo
//
// ToSipgoURIHost, ToSipgoViaHost, FromSipgoURIHost, FromSipgoViaHost and
// ToSipgoDestination convert at the boundary with github.com/emiago/sipgo
// v1.7.3, which keeps brackets in Uri.Host but not in ViaHeader.Host, does
// not check inside them, writes IPv4-mapped and zoned hosts bare and builds
// bare "host:port" destinations from an IPv6 Via (see sipgo.go).
//
// internal/sipcheck and "isthmus sip check" build the verdict on a whole
// message from these readers.
package sipaddr
