package netaddr

import "net/netip"

// Verdict reasons. Each is a short constant, safe as a Prometheus label value.
const (
	// ReasonAllowed: globally reachable, no rule matched.
	ReasonAllowed = "allowed"
	// ReasonAllowCIDR: an explicit Allow prefix matched.
	ReasonAllowCIDR = "allow-cidr"
	// ReasonAllowLoopback: loopback, and AllowLoopback is set.
	ReasonAllowLoopback = "allow-loopback"
	// ReasonRelayAddress: one of the relay's relayed addresses (Relay). The
	// address is allowed as a TURN permission (RFC 8656 section 9:
	// permissions are per IP), but the caller must relay only to ports that
	// are live relayed transport addresses of its own allocations, so that
	// two clients of one relay reach each other (relay-only ICE) while the
	// host's other services on that IP stay out of reach.
	ReasonRelayAddress = "relay-address"

	// ReasonInvalid: the zero netip.Addr.
	ReasonInvalid = "invalid"
	// ReasonNoPolicy: a nil or zero-value PeerPolicy, which denies everything.
	ReasonNoPolicy = "no-policy"
	// ReasonDenyCIDR: an explicit Deny prefix matched.
	ReasonDenyCIDR = "deny-cidr"
	// ReasonOwnAddress: one of the relay's own addresses.
	ReasonOwnAddress = "own-address"
	// ReasonBroadcast: the directed broadcast address (the last address) of
	// an IPv4 Allow prefix of length /30 or shorter: allowing a subnet
	// never opens a datagram to every host on it (RFC 919, RFC 922).
	ReasonBroadcast = "broadcast"
	// ReasonLoopback: loopback, and AllowLoopback is not set.
	ReasonLoopback = "loopback"
	// ReasonSpecialPurpose: in a special-purpose block that is not globally
	// reachable (private-use, CGNAT, link-local, documentation, multicast, ...).
	ReasonSpecialPurpose = "special-purpose"
	// ReasonReserved: IPv6 outside 2000::/3 and not in the special-purpose
	// registry, e.g. the deprecated IPv4-compatible ::a.b.c.d.
	ReasonReserved = "reserved"
)

// PeerPolicyConfig configures a PeerPolicy.
type PeerPolicyConfig struct {
	// AllowLoopback allows 127.0.0.0/8 and ::1 (in every embedded form).
	AllowLoopback bool
	// Allow lists prefixes allowed even if special-purpose; it never
	// allows one of the relay's own addresses (Own) or the directed
	// broadcast address of an IPv4 prefix.
	Allow []netip.Prefix
	// Deny lists prefixes always denied; Deny beats every other rule.
	Deny []netip.Prefix
	// Own lists the relay's own addresses (every host address), denied
	// whatever Allow says, unless listed in Relay too.
	Own []netip.Addr
	// Relay lists the addresses the relay allocates relayed transport
	// addresses on (bound and advertised). They are allowed with
	// ReasonRelayAddress, which obliges the caller to relay only to live
	// relayed transport addresses on them (the port is not known here).
	Relay []netip.Addr
}

// Verdict is the outcome of PeerPolicy.Check.
type Verdict struct {
	// Allowed reports whether relaying to the address is permitted.
	Allowed bool
	// Reason is one of the Reason... constants.
	Reason string
	// Addr is the address that decided: the checked address (unmapped), or
	// the embedded IPv4 address that was denied or explicitly allowed.
	Addr netip.Addr
	// Form is the embedding Addr was found in; FormNone when Addr is the
	// checked address itself.
	Form EmbeddedForm
}

// PeerPolicy decides which peer addresses a TURN relay may send to. It is
// immutable after NewPeerPolicy and safe for concurrent use; swap a whole
// *PeerPolicy (e.g. with atomic.Pointer) to reload. A nil or zero-value
// PeerPolicy denies everything.
type PeerPolicy struct {
	ready          bool
	allowLoopback  bool
	allow4, allow6 []netip.Prefix
	deny4, deny6   []netip.Prefix
	own            []netip.Addr
	relay          []netip.Addr
}

// NewPeerPolicy builds a policy from cfg. The slices are copied. Prefixes are
// masked and IPv4-mapped prefixes (::ffff:a.b.c.d/n, n >= 96) are turned into
// their IPv4 equivalents, since Check unmaps addresses first. Invalid (zero)
// prefixes and addresses are ignored; validate input with ParsePrefixes.
func NewPeerPolicy(cfg PeerPolicyConfig) *PeerPolicy {
	p := &PeerPolicy{ready: true, allowLoopback: cfg.AllowLoopback}
	p.allow4, p.allow6 = splitPrefixes(cfg.Allow)
	p.deny4, p.deny6 = splitPrefixes(cfg.Deny)
	for _, a := range cfg.Own {
		if a.IsValid() {
			p.own = append(p.own, a.Unmap().WithZone(""))
		}
	}
	for _, a := range cfg.Relay {
		if a.IsValid() {
			p.relay = append(p.relay, a.Unmap().WithZone(""))
		}
	}
	return p
}

func splitPrefixes(in []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, pf := range in {
		pf = canonicalPrefix(pf)
		if !pf.IsValid() {
			continue
		}
		if pf.Addr().Is4() {
			v4 = append(v4, pf)
		} else {
			v6 = append(v6, pf)
		}
	}
	return v4, v6
}

// canonicalPrefix masks pf and unmaps an IPv4-mapped prefix of length >= 96.
func canonicalPrefix(pf netip.Prefix) netip.Prefix {
	if !pf.IsValid() {
		return netip.Prefix{}
	}
	if a := pf.Addr(); a.Is4In6() && pf.Bits() >= 96 {
		pf = netip.PrefixFrom(a.Unmap(), pf.Bits()-96)
	}
	return pf.Masked()
}

// Config returns a copy of the configuration the policy was built from, in
// canonical form (IPv4 prefixes before IPv6 ones).
func (p *PeerPolicy) Config() PeerPolicyConfig {
	if p == nil {
		return PeerPolicyConfig{}
	}
	var c PeerPolicyConfig
	c.AllowLoopback = p.allowLoopback
	c.Allow = append(append([]netip.Prefix(nil), p.allow4...), p.allow6...)
	c.Deny = append(append([]netip.Prefix(nil), p.deny4...), p.deny6...)
	c.Own = append([]netip.Addr(nil), p.own...)
	c.Relay = append([]netip.Addr(nil), p.relay...)
	return c
}

// Check decides whether relaying to a is allowed. The address is unmapped
// (::ffff:a.b.c.d becomes a.b.c.d) and every IPv4 address it embeds (see
// EmbeddedIPv4) is checked as well; all of them must pass. For each address
// the first matching rule wins:
//
//  1. an explicit Deny prefix: deny;
//  2. loopback, when AllowLoopback: allow;
//  3. a relay address (Relay), not loopback, written as itself (not
//     IPv4-mapped nor embedded): allow with ReasonRelayAddress (the caller
//     checks the port);
//  4. one of the relay's own addresses: deny (Allow cannot re-open them);
//  5. an explicit Allow prefix: allow, except its directed broadcast
//     address (IPv4, /30 or shorter): deny;
//  6. loopback: deny;
//  7. not globally reachable per the IANA registries: deny;
//  8. otherwise allow.
//
// A denial reports the first address that failed, embedded ones first, so
// ::ffff:127.0.0.1 and 2002:7f00:1::1 both say "loopback" with Addr
// 127.0.0.1. Because the carrier is checked too, an Allow prefix for the
// embedded IPv4 does not open the carriers that are themselves not global
// (IPv4-compatible ::a.b.c.d, local-use NAT64 64:ff9b:1::/48); allow those
// prefixes explicitly if wanted. Check does not allocate.
func (p *PeerPolicy) Check(a netip.Addr) Verdict {
	// The relay-address rule holds for the address as the client wrote it
	// only: reached through an IPv4-mapped or any other embedding it is
	// not one of the relay's relayed transport addresses.
	direct := !a.Is4In6()
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return Verdict{Reason: ReasonInvalid}
	}
	if p == nil || !p.ready {
		return Verdict{Reason: ReasonNoPolicy, Addr: a}
	}
	// The embedded addresses are examined first so that a denial names the
	// address an attacker hid (127.0.0.1 in 2002:7f00:1::1), not its carrier.
	v4, n, form := embedded(a)
	best := Verdict{Allowed: true, Reason: ReasonAllowed, Addr: a}
	for _, e := range v4[:n] {
		ok, r := p.decide(e, false)
		if !ok {
			return Verdict{Reason: r, Addr: e, Form: form}
		}
		// Report an explicit rule on an embedded address over a default.
		if best.Reason == ReasonAllowed && r != ReasonAllowed {
			best = Verdict{Allowed: true, Reason: r, Addr: e, Form: form}
		}
	}
	ok, r := p.decide(a, direct)
	if !ok {
		return Verdict{Reason: r, Addr: a}
	}
	if r != ReasonAllowed {
		// An explicit rule on the checked address itself wins the report.
		best = Verdict{Allowed: true, Reason: r, Addr: a}
	}
	return best
}

// decide applies the precedence rules to one address (no embedding).
// direct says a is the checked address itself, not unmapped nor embedded.
func (p *PeerPolicy) decide(a netip.Addr, direct bool) (bool, string) {
	allow, deny := p.allow6, p.deny6
	if a.Is4() {
		allow, deny = p.allow4, p.deny4
	}
	if containsAny(deny, a) {
		return false, ReasonDenyCIDR
	}
	loop := a.IsLoopback()
	if loop && p.allowLoopback {
		return true, ReasonAllowLoopback
	}
	// Loopback relay addresses (a test or single-host setup) keep the
	// loopback rule: no TURN client elsewhere can hold a relayed address
	// there.
	if direct && !loop && containsAddr(p.relay, a) {
		return true, ReasonRelayAddress
	}
	// Own-address outranks Allow: an allowed subnet that holds the host
	// must not re-open the host's own services to its TURN clients.
	if containsAddr(p.own, a) {
		return false, ReasonOwnAddress
	}
	if ok, bcast := allowedIn(allow, a); ok {
		if bcast {
			return false, ReasonBroadcast
		}
		return true, ReasonAllowCIDR
	}
	if loop {
		return false, ReasonLoopback
	}
	switch classify(a) {
	case reachSpecial:
		return false, ReasonSpecialPurpose
	case reachReserved:
		return false, ReasonReserved
	case reachInvalid:
		return false, ReasonInvalid
	}
	return true, ReasonAllowed
}

func containsAny(pfs []netip.Prefix, a netip.Addr) bool {
	for _, pf := range pfs {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, o := range l {
		if o == a {
			return true
		}
	}
	return false
}

// allowedIn reports whether an Allow prefix holds a, and whether a is the
// directed broadcast address of every such IPv4 prefix of /30 or shorter
// (a /31 and /32 have none, RFC 3021).
func allowedIn(pfs []netip.Prefix, a netip.Addr) (ok, bcast bool) {
	bcast = true
	for _, pf := range pfs {
		if !pf.Contains(a) {
			continue
		}
		ok = true
		if !a.Is4() || pf.Bits() > 30 || !isLastIn(pf, a) {
			bcast = false
		}
	}
	return ok, ok && bcast
}

// isLastIn reports whether a (IPv4) is the last address of pf.
func isLastIn(pf netip.Prefix, a netip.Addr) bool {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	host := uint32(1)<<(32-pf.Bits()) - 1
	return v&host == host
}
