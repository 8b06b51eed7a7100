// Package sdpcand reads and writes SDP session descriptions (RFC 8866,
// offer/answer per RFC 3264) that carry ICE candidates of both IP families
// (RFC 8839), following the media-layer rules of RFC 6157 §4.1. pion/sdp/v3
// does the grammar and pion/ice/v4 the candidate lines; this package adds
// what a dual-stack softphone needs on top of them.
//
// # Main types
//
//   - Parse reads a remote description into a Session: per m-line (Media)
//     the applicable c= line with session-level inheritance, its family,
//     address (an IP or a name), multicast TTL and count, whether it is
//     "unspecified" (0.0.0.0, ::, or a name under .invalid), the ICE
//     credentials, the candidates and the direction.
//   - BuildOffer writes an offer with one audio m-line whose c=/m= address is
//     the default candidate (ChooseDefault: for an IPv6-only agent, its IPv4
//     relayed address) and a=candidate lines of both families.
//   - BuildAnswer answers an offer keeping, per m-line, the offer's network
//     type (RFC 6157 §4.1 rule 2) or fails with ErrNoAddressOfFamily.
//     AcceptedMedia tells which offered m-line the answer accepts.
//
// # RFC 6157 §4.1
//
// Rule 1: where an IPv6 "unspecified" address is needed (hold, third-party
// call control) the c= line is "c=IN IP6 unspecified.invalid" (InvalidHost),
// never "::". Parse reports "::", "0.0.0.0" and any .invalid name as
// Media.Unspecified.
//
// Rule 2: each m-line of an answer uses the network type of the offer's
// applicable c= line. An agent without an address of that family refuses
// the offer (ErrNoAddressOfFamily; SIP answers 488) instead of switching.
//
// # What this package fixes in pion
//
// pion/sdp accepts an empty body or one that stops after v= (Parse requires
// v=, o= and s=), keeps the last of several c= lines in one section (Parse rejects
// them: ErrMultipleConnection), keeps "224.2.1.1/127/3" as one string and
// never checks a c= address against its network type (Parse splits TTL and
// count and rejects "c=IN IP4 2001:db8::1": ErrAddressMismatch), returns
// io.EOF when the last line has no line end and loses an rtpmap with a
// trailing space (Parse rewrites the text with CRLF line ends and no
// trailing white space first; LF-only bodies as archived by RFC 5118 read
// fine), and merges the rtpmaps of all m-lines into one table (Parse
// resolves payload types per m-line). pion/ice rejects a server-reflexive or
// relayed candidate whose address is a name and guesses UDP4 for named host
// candidates: Parse keeps every raw candidate line with its error and never
// fails on one, and CandidateFamily reports 0 for names. pion/ice's Marshal
// drops raddr/rport when they are unknown, which RFC 8839 requires for
// non-host candidates: BuildOffer writes the privacy form instead.
//
// Example:
//
//	offer, err := sdpcand.BuildOffer(sdpcand.OfferParams{
//		Ufrag: "abcd", Pwd: "0123456789abcdefghijkl",
//		Candidates: cands, // from gather, both families
//	})
//	...
//	remote, err := sdpcand.Parse(answerBytes)
//	for _, m := range remote.Media {
//		fmt.Println(m.Index, m.Kind, m.Family, m.Address, m.Port, len(m.Candidates))
//	}
package sdpcand
