// Package sipua is a thin SIP user agent on github.com/emiago/sipgo v1.7.3
// that carries the offers and answers of package gather: what a softphone
// embedding the Isthmus SDK needs to place and take a call across address
// families (RFC 6157).
//
// sipgo does the transport and transaction work (RFC 3261 §17, §18) and
// the dialog bookkeeping; this package adds what it lacks or gets wrong on
// IPv6:
//
//   - Servers are located with siplocate (RFC 3263 NAPTR → SRV → A/AAAA,
//     RFC 6724 order), not with sipgo's resolver (which asks A/AAAA before
//     SRV and prefers the first IPv4 answer). Only targets the UA's family
//     can reach are tried, in order, failing over on a timeout, a transport
//     error or a 503 (RFC 3263 §4.3).
//   - The outbound proxy is a pre-loaded Route (RFC 3261 §8.1.2) naming the
//     located address, so the INVITE, its CANCEL (which sipgo sends to the
//     top Route or else the Request-URI) and the ACK of a non-2xx all go to
//     the same server.
//   - Every host sipgo is given comes from sipaddr: the Contact host in
//     brackets for IPv6 (RFC 5118 §4.4; sipgo writes IPv4-mapped and zoned
//     hosts bare), the Via host in sipgo's bare form (its writer adds the
//     brackets). Incoming requests whose Contact or top Via host is not a
//     valid RFC 5118 reference are refused with 400 (RFC 5118 §4.2).
//   - Via carries rport (RFC 3581); the received/rport the registrar saw are
//     read with sipaddr (bracketed or bare, RFC 5118 §4.5) and reported in
//     Registration.
//
// # Use
//
//	ua, err := sipua.New(sipua.Config{
//		AOR:      "sip:alice@example.org",
//		Listen:   netip.MustParseAddrPort("[2001:db8::10]:5060"),
//		Proxy:    "sip:example.org",
//		Username: "alice", Password: "secret",
//		Logger:   slog.Default(),
//	})
//	defer ua.Close()
//	reg, err := ua.Register(ctx)
//	agent, _ := gather.NewAgent(gather.Config{TURN: ...})
//	call, err := ua.Dial(ctx, "sip:bob@example.org", agent) // INVITE, 200, ACK, Connect
//	call.Media().WriteRTP(pkt)
//	err = call.Hangup(ctx) // BYE
//
// Incoming calls reach Config.OnInvite, which answers with Incoming.Answer
// (a gather agent's answer in the 200, then Connect after the ACK) or
// refuses with Incoming.Reject. A cancelled Dial context sends CANCEL.
//
// Only UDP is used for SIP for now; the UA's family is that of
// Config.Listen.
package sipua
