// Package siplocate finds the servers behind SIP, TURN and STUN URIs and
// connects to them, for clients on any mix of IPv4 and IPv6.
//
// Resolver.Locate turns a URI into the ordered list of Targets to try:
//
//   - sip: and sips: per RFC 3263: NAPTR (SIP+D2U, SIP+D2T, SIPS+D2T), then
//     SRV (_sip._udp, _sip._tcp, _sips._tcp), then A/AAAA at 5060/5061.
//     sips: resolves to TLS only; transport= and maddr= are honoured; an
//     explicit port or a numeric host skips NAPTR and SRV (§4.1–4.2).
//   - turn: and turns: per RFC 5928: S-NAPTR (RELAY:turn.udp, turn.tcp,
//     turn.tls), then SRV (_turn._udp, _turn._tcp, _turns._tcp), then
//     A/AAAA at 3478/5349; ?transport= narrows the list, a port means
//     A/AAAA only.
//   - stun: and stuns: per RFC 8489 §8 and RFC 7064: SRV (_stun._udp,
//     _stun._tcp, _stuns._tcp), then A/AAAA.
//
// SRV records are ordered by priority and weighted random (RFC 2782); an
// SRV target of "." means the service is not offered (ErrUnavailable).
// Each target's addresses are ordered by RFC 6724 destination address
// selection against the host's own source addresses (netaddr.SortDestinations),
// with the families interleaved as RFC 8305 §4 says: an IPv6-only client
// finds the AAAA path first and an IPv4 address it cannot reach last.
//
// Queries go, with github.com/miekg/dns, to Resolver.Server or to the
// nameservers of /etc/resolv.conf in order, over UDP with EDNS(0), and
// over TCP when an answer is truncated; CNAME chains are followed.
//
// Two ways to use the list: an Iterator fails over one transaction at a
// time (UDP: after a timeout or a 503, Next), and a Dialer races TCP and
// TLS connection attempts with RFC 8305 staggering (250 ms Connection
// Attempt Delay), keeping the first that connects and closing the others.
//
//	r := &siplocate.Resolver{Server: "192.0.2.53:53"}
//	targets, err := r.Locate(ctx, "sips:example.org")
//	// targets[0]: tls [2001:db8::5]:5061 via SRV _sips._tcp.example.org. ...
//	conn, err := r.DialContext(ctx, "tcp", "sip:example.org;transport=tcp")
package siplocate
