package sdpcand

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// CandidateAddr returns a candidate's transport address, false when its
// address is a name (an mDNS ".local" or a ".invalid" host) rather than an IP.
// The zone of a link-local address is dropped: it names a local interface.
func CandidateAddr(c ice.Candidate) (netip.AddrPort, bool) {
	if c == nil {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(c.Address())
	if err != nil || c.Port() < 0 || c.Port() > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.WithZone(""), uint16(c.Port())), true
}

// CandidateFamily returns the family of a candidate's address, 0 when the
// address is a name. pion/ice guesses UDP4 for every named host candidate,
// so its NetworkType cannot tell.
func CandidateFamily(c ice.Candidate) netaddr.Family {
	ap, ok := CandidateAddr(c)
	if !ok {
		return 0
	}
	return netaddr.FamilyOf(ap.Addr())
}

// defaultRank orders candidates for the c=/m= default address; lower is
// better, -1 means unusable. RFC 8445 §5.1.4 recommends the relayed
// candidate as default (it works through any NAT), and RFC 6157 §4 says the
// IPv4 one reaches the large IPv4-only installed base, so an IPv6-only agent
// offers its IPv4 relayed address.
func defaultRank(c ice.Candidate) int {
	ap, ok := CandidateAddr(c)
	if !ok || c.Component() != ice.ComponentRTP || !c.NetworkType().IsUDP() {
		return -1
	}
	a := ap.Addr()
	if a.IsUnspecified() || a.IsMulticast() || ap.Port() == 0 {
		return -1
	}
	var r int
	switch c.Type() {
	case ice.CandidateTypeRelay:
		r = 0
	case ice.CandidateTypeServerReflexive:
		r = 1
	case ice.CandidateTypeHost:
		r = 2
	default:
		r = 3
	}
	if netaddr.FamilyOf(a) == netaddr.IPv6 {
		r += 4
	}
	if a.IsLinkLocalUnicast() {
		r += 8 // needs a zone the peer does not have
	}
	return r
}

// ChooseDefault returns the address most likely to work for a peer that does
// not do ICE: the IPv4 relayed candidate first (for an IPv6-only agent that
// is the address its TURN server handed out), then IPv4 server-reflexive and
// host, then the IPv6 ones in the same order. Among equals the higher ICE
// priority wins. Only UDP RTP-component candidates with an IP address count.
func ChooseDefault(cands []ice.Candidate) (netip.AddrPort, bool) {
	return chooseDefault(cands, 0)
}

// DefaultAddrs returns ChooseDefault's pick per family, the shape
// AnswerParams.Addrs wants.
func DefaultAddrs(cands []ice.Candidate) map[netaddr.Family]netip.AddrPort {
	out := make(map[netaddr.Family]netip.AddrPort, 2)
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		if ap, ok := chooseDefault(cands, f); ok {
			out[f] = ap
		}
	}
	return out
}

// chooseDefault is ChooseDefault restricted to family (0 = any).
func chooseDefault(cands []ice.Candidate, family netaddr.Family) (netip.AddrPort, bool) {
	best, bestRank := -1, 0
	for i, c := range cands {
		r := defaultRank(c)
		if r < 0 || (family != 0 && CandidateFamily(c) != family) {
			continue
		}
		if best < 0 || r < bestRank || (r == bestRank && c.Priority() > cands[best].Priority()) {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		return netip.AddrPort{}, false
	}
	ap, _ := CandidateAddr(cands[best])
	return ap, true
}

// candidateValue writes the value of an a=candidate attribute (RFC 8839
// §5.1). pion/ice's Marshal leaves out raddr/rport when the related address
// is unknown or its port is 0, but RFC 8839 requires them for every
// candidate other than host; the privacy form ("0.0.0.0"/"::" port 9) is
// put in their place.
func candidateValue(c ice.Candidate) string {
	v := c.Marshal()
	if c.Type() == ice.CandidateTypeHost || strings.Contains(v, " raddr ") {
		return v
	}
	raddr, rport := "0.0.0.0", 9
	if CandidateFamily(c) == netaddr.IPv6 {
		raddr = "::"
	}
	if r := c.RelatedAddress(); r != nil && r.Address != "" {
		raddr, rport = r.Address, r.Port
	}
	typ := " typ " + c.Type().String()
	i := strings.Index(v, typ)
	if i < 0 {
		return v
	}
	i += len(typ)
	return v[:i] + " raddr " + raddr + " rport " + strconv.Itoa(rport) + v[i:]
}
