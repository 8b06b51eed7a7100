// Package gather is the Isthmus softphone SDK: it gathers ICE candidates of
// both address families, writes the SDP offer or answer (through package
// sdpcand), and brings up a media path that carries RTP — by ICE with a
// peer that does ICE, and through our TURN allocation straight to the
// c=/m= address with a legacy peer that does not. It implements RFC 6157
// §4.2: a dual-stack agent offers IPv4 and IPv6 candidates, and an
// IPv6-only agent gets its IPv4 address from a TURN relay (and an IPv4-only
// agent its IPv6 one).
//
// # Main types
//
// Agent is one call leg: NewAgent(Config), then Offer + SetRemoteAnswer or
// Answer, then Connect, which returns a MediaConn (Read/Write whole
// packets, ReadRTP/WriteRTP, Selected reports the path). Gather alone gives
// the candidates with a trickle callback and an end-of-candidates signal.
//
//	a, _ := gather.NewAgent(gather.Config{
//		TURN:     []string{"turn:relay.example:3478?transport=udp"},
//		Username: "alice", Password: "secret",
//	})
//	defer a.Close()
//	offer, _ := a.Offer(ctx)         // send in the SIP INVITE
//	_ = a.SetRemoteAnswer(answerSDP) // from the 200 OK
//	media, _ := a.Connect(ctx)
//	_ = media.WriteRTP(pkt)
//
// # What pion lacks, and how this package closes it
//
// Gathering is ours; pion/ice v4 only runs the connectivity checks.
//
// Relays across families. pion/ice v4.4.8 gathers from IPv6 TURN servers
// too, but asks each only for the relayed family of the transport and
// never for the other one, and pion/turn v5's client writes REQUESTED-ADDRESS-FAMILY (RFC
// 6156) only for IPv6 — but coturn gives an IPv6 relay to an IPv6 client
// that omits it. So the agent allocates itself with pion/turn's client, one
// allocation per TURN server and requested relay family (Config.RelayFamilies,
// default both), reaching the server over the same family when it can and
// over the other one when not (an IPv6-only agent asks over IPv6 for its
// IPv4 relay). A small net.PacketConn wrapper in front of the client's
// socket (rafConn) is the seam: it re-encodes each Allocate request that
// lacks the attribute with pion/stun, adds REQUESTED-ADDRESS-FAMILY,
// recomputes MESSAGE-INTEGRITY (long-term credentials) and FINGERPRINT, and
// keeps the transaction ID; it also notes the XOR-MAPPED-ADDRESS of the
// answer, the relayed candidate's related address. UDP, TCP
// (?transport=tcp, RFC 6062 framing via turn.NewSTUNConn) and TLS (turns:)
// transports reach the server; the relayed address is always UDP.
//
// Handing candidates to pion/ice. pion/ice accepts ready-made local
// candidates with their own packet conn (Agent.AddVirtualCandidate), so
// every host, server-reflexive and relayed candidate is built by us
// (ice.NewCandidateHost/ServerReflexive/Relay with our priority and
// foundation) and handed over at Connect together with its socket or
// allocation. Until then the sockets are ours, which is what lets Connect
// use the allocation directly for a legacy peer instead.
//
// Priorities (RFC 8421). pion gives an IPv4 and an IPv6 host candidate the
// same priority. Here every candidate gets a unique local preference:
// host addresses are sorted by RFC 6724 precedence within each family and
// the families alternate, starting with the best (native IPv6 before IPv4,
// IPv4 before ULA); server-reflexive and relayed candidates interleave IPv6
// and IPv4 per server, relayed ones also ranked by transport (UDP > TCP >
// TLS). priority = type preference<<24 | local preference<<8 | (256 -
// component), type preferences 126/100/0 (RFC 8445 §5.1.2.2).
//
// Deadlines and trickle. Gather calls a callback per candidate as it is
// found and once with nil at the end; the whole gathering is bounded by
// Config.Timeout (DefaultTimeout, 2 s), after which attempts still running
// are abandoned and their sockets closed — pion waits 5 s for a dead STUN
// server and 7.8 s for a dead TURN server. Gather's Stats say what failed
// and what was late.
//
// Host candidates are the usable addresses of the host's up interfaces
// (netaddr.IsUsableHost: global, private, ULA; link-local only with
// Config.IncludeLinkLocal); IPv6 addresses the kernel marks temporary,
// deprecated, tentative or DAD-failed (/proc/net/if_inet6) are skipped.
// Config.HostAddrs replaces enumeration (loopback allowed, for tests).
// Nothing assumes loopback: in a network namespace the agent sees that
// namespace's interfaces. Run each agent in a process inside its namespace
// (ip netns exec): gathering opens sockets from several goroutines, so
// switching one locked OS thread with setns is not enough.
//
// Connectivity. The offerer is controlling (the answerer too when the
// offer is ICE-lite). Consent freshness (RFC 7675) is pion/ice's Binding
// request on the selected pair; Config.ConsentTimeout (default 30 s, RFC
// 7675 §5.1) after the peer's last answer, OnStateChange reports
// StateFailed (StateDisconnected comes after a sixth of it) and
// MediaConn Read and Write return errors wrapping ErrConsentLost. pion/ice's
// own timers add the disconnected timeout to the failed one (35 s with its
// defaults); ours are derived so that the total is the consent timeout.
// Connect returns when a pair is selected, when the checks fail (an error
// wrapping ErrConsentLost), when ctx ends (wrapping ctx.Err()) or on Close.
// RTP and RTCP are multiplexed on component 1 (RFC 5761) when the offer
// has a=rtcp-mux. An offer without it is answered with component-2 host
// candidates (ICE) and an a=rtcp attribute (RFC 3605) at a socket the
// agent holds; component 2 runs on a second pion/ice agent with the same
// credentials (pion/ice v4.4.8 is single-component) and MediaConn.RTCP
// returns it. A legacy peer
// (no ICE attributes) gets media from our candidate of its family — the
// relayed one when there is one: CreatePermission at Connect, ChannelBind
// on first send (pion/turn) — and MediaConn.Selected reports
// "legacy-relay".
//
// The call after Connect. Offer and Answer work on a connected agent
// (re-INVITE, hold and resume with OfferOptions.Direction, session
// refresh): the o= session id stays and its version goes up by one (RFC
// 3264 §8), the credentials and candidates stay, and media keeps flowing
// on the selected pair. Gather runs on a goroutine of its own: its
// callback may call Offer, Answer or Gather; a cancelled Gather returns an
// error wrapping ctx.Err() and the next one starts afresh; Close stops a
// gathering in progress (sockets closed, no retransmission after Close).
// OfferOptions.Trickle returns the offer with the host candidates only
// (RFC 8838 half trickle); the rest come through Gather's callback, and
// AddRemoteCandidate takes the peer's trickled candidates.
//
// Ready policy. A gathering ends 200 ms after every requested relay family
// has its relayed candidate, so a dead server costs no more than that once
// a live relay answered (Stats.Ready). A TURN server whose name has
// addresses of both families is asked over the preferred family first and
// over the other one 250 ms later or as soon as the first attempt fails
// (Happy Eyeballs, RFC 8305 §5); the first allocation wins.
package gather
