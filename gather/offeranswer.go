package gather

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// OfferOptions change what Offer writes.
type OfferOptions struct {
	// Direction is the offer's direction attribute: "" or "sendrecv",
	// "sendonly" (hold, RFC 3264 §8.4), "recvonly" or "inactive". The c=
	// address stays the real one: with ICE a hold is said by the
	// attribute, never by 0.0.0.0.
	Direction string
	// Trickle returns the offer as soon as the host candidates are in,
	// without a=end-of-candidates (half trickle, RFC 8838 §4.1 and RFC
	// 8840). The other candidates come through Gather's callback, for the
	// application to send to the peer; they join the checks as they come.
	Trickle bool
}

// Offer gathers (if not done yet) and returns an SDP offer with one audio
// m-line, candidates of both families and end-of-candidates. The c=/m=
// default address is the candidate most likely to work for a peer without
// ICE (sdpcand.ChooseDefault: an IPv4 relayed address on an IPv6-only
// agent). The offerer of the first offer is the controlling ICE agent.
//
// On a connected agent Offer writes a re-offer (re-INVITE, hold, resume,
// session refresh): the same o= session id with the version one higher
// (RFC 3264 §8), the same ICE credentials and candidates, the selected
// pair's local candidate as default address (RFC 8839 §4.4.1.2.2); media
// keeps flowing on the selected pair.
func (a *Agent) Offer(ctx context.Context, opts ...OfferOptions) ([]byte, error) {
	var o OfferOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	complete := true
	if o.Trickle {
		run, _, err := a.startGather(ctx)
		if err != nil {
			return nil, err
		}
		select {
		case <-run.hostsDone:
		case <-ctx.Done():
			return nil, fmt.Errorf("gather: offer: %w", ctx.Err())
		}
		a.mu.Lock()
		complete, err = run.finished, run.err
		a.mu.Unlock()
		if complete && err != nil {
			return nil, err
		}
	} else if err := a.gatherFirst(ctx); err != nil {
		return nil, err
	}
	cands := a.localCandidates()
	def, ok := a.currentDefault()
	if !ok {
		if def, ok = sdpcand.ChooseDefault(cands); !ok {
			def = a.fallbackDefault()
		}
	}
	id, ver := a.nextOrigin()
	ufrag, pwd := a.Credentials()
	b, err := sdpcand.BuildOffer(sdpcand.OfferParams{
		SessionID: id, SessionVersion: ver,
		Ufrag: ufrag, Pwd: pwd, Candidates: cands, Default: def, Codecs: a.cfg.Codecs,
		Direction: o.Direction, NoEndOfCandidates: !complete,
	})
	if err != nil {
		return nil, fmt.Errorf("gather: offer: %w", err)
	}
	a.mu.Lock()
	if a.remote == nil {
		// The first offer makes us controlling; a re-offer keeps the roles
		// (RFC 8445 §7.1: they change only on a restart or a conflict).
		a.controlling = true
	}
	a.offered = true
	a.offerDefault = def
	a.mu.Unlock()
	return b, nil
}

// currentDefault is the local address of the path in use, once connected.
func (a *Agent) currentDefault() (netip.AddrPort, bool) {
	a.mu.Lock()
	media := a.media
	a.mu.Unlock()
	if media == nil {
		return netip.AddrPort{}, false
	}
	p := media.Selected()
	return p.Local, p.Local.IsValid()
}

// Answer parses a remote offer, gathers (if not done yet) and returns the
// answer: the same network type as the offer on every m-line (RFC 6157
// §4.1 rule 2; an error wrapping sdpcand.ErrNoAddressOfFamily when the
// agent has no address of the offered family), our ICE credentials and
// candidates. The answerer is the controlled ICE agent unless the offerer
// is ICE-lite.
//
// On a connected agent Answer answers a re-offer (hold, resume, session
// refresh, codec change): the same o= session id with the version one
// higher (RFC 3264 §8), the direction answered per RFC 3264 §6.1, and the
// media keeps flowing on the selected pair.
func (a *Agent) Answer(ctx context.Context, offerSDP []byte) ([]byte, error) {
	offer, err := sdpcand.Parse(offerSDP)
	if err != nil {
		return nil, fmt.Errorf("gather: answer: offer: %w", err)
	}
	a.mu.Lock()
	restart := a.iceStarted && offer.ICE() && a.remoteUfrag != "" && credsOf(offer, -1) != [2]string{a.remoteUfrag, a.remotePwd}
	a.mu.Unlock()
	if restart {
		// RFC 8445 §9: an offer with new credentials restarts ICE; the
		// answer carries our new ones and a fresh gathering.
		if err := a.Restart(ctx); err != nil {
			return nil, fmt.Errorf("gather: answer: ICE restart: %w", err)
		}
	}
	if err := a.gatherFirst(ctx); err != nil {
		return nil, err
	}
	addrs := map[netaddr.Family]netip.AddrPort{}
	for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
		// Candidates pion/ice or the media path own count too: after
		// Connect every candidate is owned, and a re-offer must still be
		// answered from them.
		if lc := a.defaultCandidate(f); lc != nil {
			addrs[f] = lc.addr
		}
	}
	if cur, ok := a.currentDefault(); ok {
		addrs[netaddr.FamilyOf(cur.Addr())] = cur
	}
	a.mu.Lock()
	connected := a.media != nil
	a.mu.Unlock()
	id, ver := a.nextOrigin()
	ufrag, pwd := a.Credentials()
	params := sdpcand.AnswerParams{
		SessionID: id, SessionVersion: ver,
		Ufrag: ufrag, Pwd: pwd, Candidates: a.localCandidates(), Addrs: addrs, Codecs: a.cfg.Codecs,
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
	if !connected {
		a.controlling = offer.ICELite
	}
	a.mu.Unlock()
	if restart {
		if err := a.restartRemote(offer, accepted); err != nil {
			return nil, fmt.Errorf("gather: answer: ICE restart: %w", err)
		}
	}
	return b, nil
}

// credsOf returns the ICE credentials of m-line idx of s (the first active
// one when idx < 0).
func credsOf(s *sdpcand.Session, idx int) [2]string {
	m, ok := activeMedia(s, idx)
	if !ok {
		return [2]string{s.Ufrag, s.Pwd}
	}
	return [2]string{m.Ufrag, m.Pwd}
}

// restartRemote gives pion/ice, after a restart, the peer's new
// credentials and candidates from description s.
func (a *Agent) restartRemote(s *sdpcand.Session, idx int) error {
	m, ok := activeMedia(s, idx)
	if !ok {
		return ErrNoMedia
	}
	if err := a.ice.SetRemoteCredentials(m.Ufrag, m.Pwd); err != nil {
		return err
	}
	a.mu.Lock()
	a.remoteUfrag, a.remotePwd = m.Ufrag, m.Pwd
	a.mu.Unlock()
	for _, rc := range m.Candidates {
		if rc.Component() != rtpComponent {
			continue
		}
		if err := a.ice.AddRemoteCandidate(rc); err != nil {
			a.log.Debug("remote candidate skipped", slog.Any("error", err), slog.String("candidate", rc.String()))
		}
	}
	return nil
}

// Restart is an ICE restart (RFC 8445 §9): new local credentials, the old
// candidates released and a fresh gathering, which join the checks as they
// come. The next Offer carries the new ufrag and pwd; the peer's answer
// (SetRemoteAnswer) gives its new ones and candidates. An Answer to an
// offer with new remote credentials restarts on its own. The MediaConn
// stays the same and recovers a failed path. pion/ice v4.4.8's restart
// drops the old pairs at once, so media pauses until the new checks
// succeed (break-before-make).
func (a *Agent) Restart(ctx context.Context) error {
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return err
	}
	run, started := a.run, a.iceStarted
	a.mu.Unlock()
	if !started {
		return fmt.Errorf("gather: restart: %w", ErrNoRemote)
	}
	if run != nil {
		select {
		case <-run.done:
		case <-ctx.Done():
			return fmt.Errorf("gather: restart: %w", ctx.Err())
		}
	}
	// pion/ice closes every candidate it owns (our sockets and
	// allocations) and forgets the remote ones.
	if err := a.ice.Restart("", ""); err != nil {
		return fmt.Errorf("gather: restart: %w", err)
	}
	ufrag, pwd, err := a.ice.GetLocalUserCredentials()
	if err != nil {
		return fmt.Errorf("gather: restart: %w", err)
	}
	a.mu.Lock()
	for _, lc := range a.cands {
		if !lc.owned {
			_ = lc.release()
		}
	}
	a.cands, a.run, a.gathered, a.gatherErr = nil, nil, false, nil
	a.ufrag, a.pwd = ufrag, pwd
	if isClosed(a.failed) {
		a.failed = make(chan struct{})
	}
	media := a.media
	a.mu.Unlock()
	if media != nil {
		media.regainConsent()
	}
	if _, err := a.Gather(ctx, nil); err != nil {
		return fmt.Errorf("gather: restart: %w", err)
	}
	return nil
}

// SetRemoteAnswer records the peer's answer to our Offer (the first one or
// a re-offer).
func (a *Agent) SetRemoteAnswer(answerSDP []byte) error {
	ans, err := sdpcand.Parse(answerSDP)
	if err != nil {
		return fmt.Errorf("gather: remote answer: %w", err)
	}
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return err
	}
	a.remote = ans
	a.remoteMedia = -1 // the answer rejects (port 0) every m-line but the accepted one
	restart := a.iceStarted && ans.ICE() && credsOf(ans, -1) != [2]string{a.remoteUfrag, a.remotePwd}
	a.mu.Unlock()
	if restart {
		// The answer to our restart offer (or the peer restarting in its
		// answer): its new credentials and candidates.
		if err := a.restartRemote(ans, -1); err != nil {
			return fmt.Errorf("gather: remote answer: ICE restart: %w", err)
		}
	}
	return nil
}

// AddRemoteCandidate adds a candidate the peer trickled (RFC 8838, RFC
// 8840 §4.4: an "a=candidate:" or "candidate:" line from an INFO or
// re-offer). Before Connect it is kept for the checks; after, it joins
// them at once. "a=end-of-candidates" calls RemoteEndOfCandidates.
// Candidates of other components than RTP's are ignored.
func (a *Agent) AddRemoteCandidate(sdpLine string) error {
	line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sdpLine), "a="))
	if line == "end-of-candidates" {
		a.RemoteEndOfCandidates()
		return nil
	}
	c, err := ice.UnmarshalCandidate(line)
	if err != nil {
		return fmt.Errorf("gather: remote candidate %q: %w", sdpLine, err)
	}
	if c.Component() != rtpComponent {
		return nil
	}
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return err
	}
	started := a.iceStarted
	if !started {
		a.pendingRemote = append(a.pendingRemote, c)
	}
	a.mu.Unlock()
	if started {
		if err := a.ice.AddRemoteCandidate(c); err != nil {
			return fmt.Errorf("gather: remote candidate %q: %w", sdpLine, err)
		}
	}
	return nil
}

// RemoteEndOfCandidates notes that the peer has sent all its candidates
// (a=end-of-candidates, RFC 8840 §4.5).
func (a *Agent) RemoteEndOfCandidates() {
	a.mu.Lock()
	a.remoteEOC = true
	a.mu.Unlock()
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
// (UDP transport first), then server-reflexive, then host. Candidates
// pion/ice or a media path already own are not eligible.
func (a *Agent) legacyCandidate(f netaddr.Family, want netip.AddrPort) *localCandidate {
	return a.pickCandidate(f, want, false)
}

// defaultCandidate is legacyCandidate's choice among every candidate,
// owned or not: the default address of family f in an answer.
func (a *Agent) defaultCandidate(f netaddr.Family) *localCandidate {
	return a.pickCandidate(f, netip.AddrPort{}, true)
}

func (a *Agent) pickCandidate(f netaddr.Family, want netip.AddrPort, owned bool) *localCandidate {
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
		if lc.family != f || (lc.owned && !owned) {
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
