package gather

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// Offer gathers (if not done yet) and returns an SDP offer with one audio
// m-line, candidates of both families and end-of-candidates. The c=/m=
// default address is the candidate most likely to work for a peer without
// ICE (sdpcand.ChooseDefault: an IPv4 relayed address on an IPv6-only
// agent). The offerer is the controlling ICE agent.
func (a *Agent) Offer(ctx context.Context) ([]byte, error) {
	if err := a.gatherFirst(ctx); err != nil {
		return nil, err
	}
	cands := a.localCandidates()
	def, ok := sdpcand.ChooseDefault(cands)
	if !ok {
		def = a.fallbackDefault()
	}
	b, err := sdpcand.BuildOffer(sdpcand.OfferParams{
		Ufrag: a.ufrag, Pwd: a.pwd, Candidates: cands, Default: def, Codecs: a.cfg.Codecs,
	})
	if err != nil {
		return nil, fmt.Errorf("gather: offer: %w", err)
	}
	a.mu.Lock()
	a.offered = true
	a.controlling = true
	a.offerDefault = def
	a.mu.Unlock()
	return b, nil
}

// Answer parses a remote offer, gathers (if not done yet) and returns the
// answer: the same network type as the offer on every m-line (RFC 6157
// §4.1 rule 2; an error wrapping sdpcand.ErrNoAddressOfFamily when the
// agent has no address of the offered family), our ICE credentials and
// candidates. The answerer is the controlled ICE agent unless the offerer
// is ICE-lite.
func (a *Agent) Answer(ctx context.Context, offerSDP []byte) ([]byte, error) {
	offer, err := sdpcand.Parse(offerSDP)
	if err != nil {
		return nil, fmt.Errorf("gather: answer: offer: %w", err)
	}
	if err := a.gatherFirst(ctx); err != nil {
		return nil, err
	}
	addrs := map[netaddr.Family]netip.AddrPort{}
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		if lc := a.legacyCandidate(f, netip.AddrPort{}); lc != nil {
			addrs[f] = lc.addr
		}
	}
	params := sdpcand.AnswerParams{
		Ufrag: a.ufrag, Pwd: a.pwd, Candidates: a.localCandidates(), Addrs: addrs, Codecs: a.cfg.Codecs,
	}
	b, err := sdpcand.BuildAnswer(offer, params)
	if err != nil {
		return nil, fmt.Errorf("gather: answer: %w", err)
	}
	// Media flows on the m-line the answer accepted, which need not be the
	// offer's first active one (an earlier one may have no common codec or
	// a family we lack).
	accepted, err := sdpcand.AcceptedMedia(offer, params)
	if err != nil {
		return nil, fmt.Errorf("gather: answer: %w", err)
	}
	a.mu.Lock()
	a.remote = offer
	a.remoteMedia = accepted
	a.controlling = offer.ICELite
	a.mu.Unlock()
	return b, nil
}

// SetRemoteAnswer records the peer's answer to our Offer.
func (a *Agent) SetRemoteAnswer(answerSDP []byte) error {
	ans, err := sdpcand.Parse(answerSDP)
	if err != nil {
		return fmt.Errorf("gather: remote answer: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkOpen(); err != nil {
		return err
	}
	a.remote = ans
	a.remoteMedia = -1 // the answer rejects (port 0) every m-line but the accepted one
	return nil
}

// fallbackDefault picks a default address when sdpcand has no opinion:
// the candidate a legacy peer of the preferred family would be sent from.
func (a *Agent) fallbackDefault() netip.AddrPort {
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		if lc := a.legacyCandidate(f, netip.AddrPort{}); lc != nil {
			return lc.addr
		}
	}
	return netip.AddrPort{}
}

// legacyCandidate returns the candidate that serves a non-ICE peer of
// family f: the one at want when given and of that family, else relayed
// (UDP transport first), then server-reflexive, then host.
func (a *Agent) legacyCandidate(f netaddr.Family, want netip.AddrPort) *localCandidate {
	a.mu.Lock()
	defer a.mu.Unlock()
	var best *localCandidate
	rank := func(lc *localCandidate) int {
		switch lc.typ {
		case ice.CandidateTypeRelay:
			if lc.relayProto == "udp" {
				return 4
			}
			return 3
		case ice.CandidateTypeServerReflexive:
			return 2
		}
		return 1
	}
	for _, lc := range a.cands {
		if lc.family != f || lc.owned {
			continue
		}
		if want.IsValid() && lc.addr == want {
			return lc
		}
		if best == nil || rank(lc) > rank(best) {
			best = lc
		}
	}
	return best
}

// activeMedia returns m-line idx of s when idx >= 0, else the first m-line
// that carries media (port not 0).
func activeMedia(s *sdpcand.Session, idx int) (*sdpcand.Media, bool) {
	if idx >= 0 && idx < len(s.Media) {
		return &s.Media[idx], s.Media[idx].Port != 0
	}
	for i := range s.Media {
		if s.Media[i].Port != 0 {
			return &s.Media[i], true
		}
	}
	return nil, false
}
