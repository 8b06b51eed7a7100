package demo

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
)

// The checks read the SDP with pion/sdp and pion/ice directly, not with our
// sdpcand: they verify what the SDK wrote, so they must not share its code.

// sdpMedia is one m-line of an SDP body as the checks see it.
type sdpMedia struct {
	NetType    string // "IP4", "IP6"
	Addr       netip.Addr
	Port       int
	Candidates []ice.Candidate
}

func readSDP(body string) ([]sdpMedia, error) {
	var d sdp.SessionDescription
	if err := d.Unmarshal([]byte(body)); err != nil {
		return nil, fmt.Errorf("sdp: %w", err)
	}
	var out []sdpMedia
	for i, md := range d.MediaDescriptions {
		c := md.ConnectionInformation
		if c == nil {
			c = d.ConnectionInformation
		}
		if c == nil || c.Address == nil {
			return nil, fmt.Errorf("sdp: m-line %d: no c= line", i)
		}
		m := sdpMedia{NetType: c.AddressType, Port: md.MediaName.Port.Value}
		m.Addr, _ = netip.ParseAddr(c.Address.Address)
		for _, a := range md.Attributes {
			if a.Key != "candidate" {
				continue
			}
			cand, err := ice.UnmarshalCandidate(a.Value)
			if err != nil {
				return nil, fmt.Errorf("sdp: m-line %d: a=candidate:%s: %w", i, a.Value, err)
			}
			m.Candidates = append(m.Candidates, cand)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sdp: no m-line")
	}
	return out, nil
}

// readOfferAnswer reads both SDP bodies of r; a body that does not parse
// is recorded as a failed check and ok is false.
func readOfferAnswer(r *Result) (offer, answer []sdpMedia, ok bool) {
	offer, err := readSDP(r.Offer)
	if err != nil {
		r.Check("offer parses", false, "%v", err)
		return nil, nil, false
	}
	answer, err = readSDP(r.Answer)
	if err != nil {
		r.Check("answer parses", false, "%v", err)
		return nil, nil, false
	}
	return offer, answer, true
}

func hasCandidate(cands []ice.Candidate, typ ice.CandidateType, addr netip.Addr) bool {
	for _, c := range cands {
		a, err := netip.ParseAddr(c.Address())
		if err == nil && c.Type() == typ && a.Unmap() == addr {
			return true
		}
	}
	return false
}

func candidateSummary(cands []ice.Candidate) string {
	parts := make([]string, 0, len(cands))
	for _, c := range cands {
		parts = append(parts, c.Type().String()+" "+c.Address())
	}
	return strings.Join(parts, ", ")
}

// checkCommon holds for every scenario: every packet arrived both ways,
// every probe has its round trip, and traffic that the path says was
// relayed shows up at the relay, by family.
func checkCommon(r *Result) {
	n := r.Packets
	for _, d := range []struct {
		name     string
		from, to *EndpointResult
	}{
		{"offerer -> answerer", &r.Offerer, &r.Answerer},
		{"answerer -> offerer", &r.Answerer, &r.Offerer},
	} {
		from, to := d.from.Stats, d.to.Stats
		r.Check("RTP "+d.name+": 0 loss",
			from.ProbesSent == n && from.SendErrors == 0 && to.Received() == from.Sent() && to.Received() == 2*n,
			"%s sent %d probes + %d echoes (%d send errors); %s received %d + %d",
			d.from.Host, from.ProbesSent, from.EchoesSent, from.SendErrors, d.to.Host, to.ProbesReceived, to.EchoesReceived)
	}
	for _, e := range []*EndpointResult{&r.Offerer, &r.Answerer} {
		s := e.Stats
		r.Check(e.Host+": a round trip for every probe",
			s.EchoesReceived == n && s.RTTp50 > 0 && s.RTTp50 <= s.RTTp99 && s.RTTp99 <= s.RTTMax,
			"%d echoes, RTT p50 %s p99 %s max %s", s.EchoesReceived, s.RTTp50, s.RTTp99, s.RTTMax)
		r.Check(e.Host+": no stray or duplicate packets", s.Invalid == 0 && s.Duplicates == 0,
			"%d invalid, %d duplicates", s.Invalid, s.Duplicates)
	}

	fams := relayedFamilies(r)
	if len(fams) == 0 || r.Scenario.Relay == "" {
		return
	}
	// Each way carries 2n datagrams (probes + echoes): the relay takes them
	// in on one family and sends them out on the other.
	want := uint64(2 * n)
	u := r.RelayKernel
	r.Check("kernel: relay namespace moved the media in both families",
		u.In4 >= want && u.Out4 >= want && u.In6 >= want && u.Out6 >= want,
		"UDP datagrams in / IP packets out: IPv4 in %d out %d, IPv6 in %d out %d (want >= %d each)", u.In4, u.Out4, u.In6, u.Out6, want)
	if m := r.RelayMetrics; m != nil {
		for _, f := range fams {
			to, from := m.ToPeer4, m.FromPeer4
			if f == "IPv6" {
				to, from = m.ToPeer6, m.FromPeer6
			}
			r.Check("relay metrics: relayed packets counted as "+f,
				to >= want && from >= want,
				"isthmus_relay_packets_total family=%s client_to_peer %d peer_to_client %d (want >= %d each)",
				familyLabel(f), to, from, want)
		}
	}
}

// relayedFamilies lists the families of the relayed addresses on the path:
// each endpoint whose local candidate is relayed contributes its family.
func relayedFamilies(r *Result) []string {
	var fams []string
	for _, e := range []*EndpointResult{&r.Offerer, &r.Answerer} {
		if e.Path.Local.Type == "relay" && !strings.Contains(strings.Join(fams, ","), e.Path.Local.Family) {
			fams = append(fams, e.Path.Local.Family)
		}
	}
	return fams
}

func familyLabel(f string) string {
	if f == "IPv6" {
		return "ip6"
	}
	return "ip4"
}

// throughRelay reports whether an ICE endpoint's selected pair has a
// relayed candidate on either end.
func throughRelay(p Path) bool { return p.Local.Type == "relay" || p.Remote.Type == "relay" }

// expectIPv6OfferToIPv4 is scenario 1 (and 5.1): ua6 offers, ua4 answers.
func expectIPv6OfferToIPv4(r *Result) {
	offer, err := readSDP(r.Offer)
	if err != nil {
		r.Check("offer parses", false, "%v", err)
		return
	}
	m := offer[0]
	r.Check("RFC 6157 4.2: offer carries candidates of both families",
		hasCandidate(m.Candidates, ice.CandidateTypeHost, UA6Addr) && hasCandidate(m.Candidates, ice.CandidateTypeRelay, RelayIPv4),
		"candidates: %s", candidateSummary(m.Candidates))
	r.Check("offer c= is the IPv4 relayed address (for peers without ICE)",
		m.NetType == "IP4" && m.Addr == RelayIPv4,
		"c=IN %s %s m= port %d", m.NetType, m.Addr, m.Port)
	checkRelayedICEPair(r)
}

// expectLegacyToIPv6 is scenario 2 (and 5.2): legacy4 offers plain IPv4,
// ua6 answers with its relayed IPv4 address.
func expectLegacyToIPv6(r *Result) {
	offer, answer, ok := readOfferAnswer(r)
	if !ok {
		return
	}
	o, a := offer[0], answer[0]
	r.Check("legacy offer is plain IPv4, no ICE",
		o.NetType == "IP4" && o.Addr == Legacy4Addr && len(o.Candidates) == 0,
		"c=IN %s %s, %d candidates", o.NetType, o.Addr, len(o.Candidates))
	relayed := netip.AddrPortFrom(a.Addr, uint16(a.Port))
	r.Check("RFC 6157 4.1 rule 2: answer c= keeps the offer's IP4, with ua6's relayed address",
		a.NetType == "IP4" && a.Addr == RelayIPv4 && r.Answerer.Path.Local.Addr == relayed.String(),
		"answer c=IN %s %s m= port %d; ua6 media from %s %s", a.NetType, a.Addr, a.Port, r.Answerer.Path.Local.Type, r.Answerer.Path.Local.Addr)
	r.Check("ua6 relays to the legacy phone without ICE",
		!r.Answerer.Path.ICE && r.Answerer.Path.Local.Type == "relay" && r.Answerer.Path.Local.Family == "IPv4" &&
			r.Answerer.Path.Remote.Addr == r.Offerer.Path.Local.Addr,
		"ua6 path %s %s -> %s", r.Answerer.Path.Local.Type, r.Answerer.Path.Local.Addr, r.Answerer.Path.Remote.Addr)
	r.Check("legacy phone sends to the relayed address of the answer",
		r.Offerer.Path.Remote.Addr == relayed.String(),
		"legacy4 -> %s", r.Offerer.Path.Remote.Addr)
}

// expectIPv4OfferToIPv6 is scenario 3: ua4 offers, ua6 answers keeping the
// offer's network type on every m-line.
func expectIPv4OfferToIPv6(r *Result) {
	offer, answer, ok := readOfferAnswer(r)
	if !ok {
		return
	}
	same := len(offer) == len(answer)
	var detail []string
	for i := range min(len(offer), len(answer)) {
		same = same && offer[i].NetType == answer[i].NetType
		detail = append(detail, fmt.Sprintf("m-line %d: offer %s, answer %s %s", i, offer[i].NetType, answer[i].NetType, answer[i].Addr))
	}
	r.Check("RFC 6157 4.1 rule 2: answer keeps the offer's network type per m-line", same, "%s", strings.Join(detail, "; "))
	r.Check("ua6's IPv4 address in the answer is its relayed one", answer[0].Addr == RelayIPv4,
		"answer c= %s", answer[0].Addr)
	checkRelayedICEPair(r)
}

// CheckIPv6Preferred names the check that two dual-stack agents end up on
// the IPv6 host pair (RFC 8421: IPv6 preferred, the higher priority).
const CheckIPv6Preferred = "RFC 8421: the selected pair is IPv6"

// expectDirectIPv6 is scenario 4: two dual-stack agents pick the direct
// IPv6 host pair and leave the relay alone.
func expectDirectIPv6(r *Result) {
	offer, err := readSDP(r.Offer)
	if err == nil {
		m := offer[0]
		r.Check("dual-stack offer carries host candidates of both families",
			hasCandidate(m.Candidates, ice.CandidateTypeHost, DS1Addrs[0]) && hasCandidate(m.Candidates, ice.CandidateTypeHost, DS1Addrs[1]),
			"candidates: %s", candidateSummary(m.Candidates))
	} else {
		r.Check("offer parses", false, "%v", err)
	}
	for _, e := range []*EndpointResult{&r.Offerer, &r.Answerer} {
		p := e.Path
		r.Check("ICE: "+e.Host+" selected a direct host pair",
			p.ICE && p.Local.Type == "host" && p.Remote.Type == "host",
			"%s %s %s -> %s %s %s", p.Local.Type, p.Local.Family, p.Local.Addr, p.Remote.Type, p.Remote.Family, p.Remote.Addr)
		r.Check(CheckIPv6Preferred+" ("+e.Host+")",
			p.Local.Family == "IPv6" && p.Remote.Family == "IPv6",
			"pair %s -> %s", p.Local.Family, p.Remote.Family)
	}
	u := r.RelayKernel
	r.Check("no media through the relay", u.In4+u.In6 < uint64(r.Packets),
		"relay namespace received %d IPv4 + %d IPv6 datagrams during the media phase (media alone would be %d)", u.In4, u.In6, 4*r.Packets)
}

// checkRelayedICEPair: the IPv6-only and the IPv4-only agent can only meet
// through the relay, each on its own family.
func checkRelayedICEPair(r *Result) {
	for _, e := range []*EndpointResult{&r.Offerer, &r.Answerer} {
		p := e.Path
		var ownFamily string
		switch e.Host {
		case HostUA6:
			ownFamily = "IPv6"
		case HostUA4:
			ownFamily = "IPv4"
		}
		// A host candidate must be of the host's own family; a relayed one
		// is of the other family (a cross-family allocation) or the same.
		localOK := (p.Local.Type == "host" && p.Local.Family == ownFamily) || p.Local.Type == "relay"
		r.Check("ICE: "+e.Host+" selected a pair through the relay",
			p.ICE && throughRelay(p) && localOK && p.Local.Family == p.Remote.Family,
			"%s %s %s -> %s %s %s", p.Local.Type, p.Local.Family, p.Local.Addr, p.Remote.Type, p.Remote.Family, p.Remote.Addr)
	}
}
