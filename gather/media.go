package gather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// Mode is how a media path was set up: PathInfo.Mode.
type Mode string

// Path modes reported by PathInfo.Mode.
const (
	// ModeICE: ICE selected a candidate pair.
	ModeICE Mode = "ice"
	// ModeLegacyRelay: the peer does not do ICE; media flows through our
	// TURN allocation to the peer's c=/m= address.
	ModeLegacyRelay Mode = "legacy-relay"
	// ModeLegacyDirect: the peer does not do ICE and we had no relayed
	// candidate of its family; media flows from a host (or reflexive)
	// socket straight to its c=/m= address.
	ModeLegacyDirect Mode = "legacy-direct"
)

// PathInfo describes the media path a MediaConn uses.
type PathInfo struct {
	// Mode is ModeICE, ModeLegacyRelay or ModeLegacyDirect.
	Mode Mode
	// LocalType and RemoteType are ICE candidate types ("host", "srflx",
	// "prflx", "relay"); RemoteType is "legacy" for a non-ICE peer.
	LocalType, RemoteType string
	// LocalFamily and RemoteFamily are the families of Local and Remote.
	LocalFamily, RemoteFamily netaddr.Family
	// Local is our candidate's transport address (the relayed address for
	// a relayed candidate); Remote is the peer's.
	Local, Remote netip.AddrPort
	// RelayProtocol is the transport to the TURN server ("udp", "tcp",
	// "tls") when Local is relayed.
	RelayProtocol string
}

// String renders the path, e.g. "ice relay/IPv4 -> host/IPv4".
func (p PathInfo) String() string {
	return fmt.Sprintf("%s %s/%s -> %s/%s", p.Mode, p.LocalType, p.LocalFamily, p.RemoteType, p.RemoteFamily)
}

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
	// Media flows on the m-line the answer accepted, which need not be the
	// offer's first active one (an earlier one may have no common codec or
	// a family we lack).
	accepted, err := sdpcand.AcceptedMedia(offer, params)
	if err != nil {
		return nil, fmt.Errorf("gather: answer: %w", err)
	}
	if !offer.Media[accepted].RTCPMux {
		// RTCP on its own port: component 2 for an ICE offer, a=rtcp
		// (RFC 3605) either way, so the peer's RTCP reaches a socket we
		// hold and not the RTP port plus one.
		r, err := a.ensureRTCP(ctx)
		if err != nil {
			return nil, fmt.Errorf("gather: answer: RTCP: %w", err)
		}
		if r != nil {
			params.RTCP = r.addrs(addrs)
			params.Candidates = append(params.Candidates, r.iceCandidates()...)
		}
	}
	b, err := sdpcand.BuildAnswer(offer, params)
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

// Connect brings the media path up and returns it. With an ICE peer it
// hands every gathered candidate to pion/ice, adds the peer's candidates
// and runs the checks (controlling or controlled as negotiated) until a
// pair is selected or ctx ends. With a peer whose SDP has no ICE it sends
// to the c=/m= address of the first active m-line from our candidate of
// that family — our TURN allocation when there is one (CreatePermission
// now, ChannelBind on first send), so an IPv4-only legacy phone reaches an
// IPv6-only agent. Connect may be called once.
func (a *Agent) Connect(ctx context.Context) (*MediaConn, error) {
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	remote, remoteMedia, controlling := a.remote, a.remoteMedia, a.controlling
	if a.media != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("gather: connect: %w", ice.ErrMultipleStart)
	}
	a.mu.Unlock()
	if remote == nil {
		return nil, ErrNoRemote
	}
	m, ok := activeMedia(remote, remoteMedia)
	if !ok {
		return nil, ErrNoMedia
	}
	var mc *MediaConn
	var err error
	if remote.ICE() {
		mc, err = a.connectICE(ctx, m, controlling)
	} else {
		mc, err = a.connectLegacy(m)
	}
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.media = mc
	lost := a.state == StateFailed
	a.mu.Unlock()
	if lost {
		mc.loseConsent()
	}
	if mc.iceConn == nil {
		a.setState(StateConnected) // a legacy path has no checks: up from now until Close
	}
	return mc, nil
}

func (a *Agent) connectICE(ctx context.Context, m *sdpcand.Media, controlling bool) (*MediaConn, error) {
	// Remote candidates go in first, and we wait until pion has them all
	// before our sockets start answering checks. Otherwise the peer's first
	// check can arrive before its candidate is known, pion learns it as
	// peer-reflexive with a lower priority, and a worse pair (an IPv4 one
	// where IPv6 was preferred, RFC 8421) can win.
	added := 0
	a.mu.Lock()
	remotes := append(slices.Clone(m.Candidates), a.pendingRemote...)
	a.pendingRemote = nil
	a.mu.Unlock()
	for _, rc := range remotes {
		if rc.Component() != rtpComponent {
			continue
		}
		if err := a.ice.AddRemoteCandidate(rc); err != nil {
			a.log.Debug("remote candidate skipped", slog.Any("error", err), slog.String("candidate", rc.String()))
			continue
		}
		added++
	}
	a.awaitRemoteCandidates(ctx, added)
	a.mu.Lock()
	// From here on, candidates found later (trickle) go to pion/ice as
	// they come (keep); the ones found so far are added here, once.
	a.iceStarted = true
	cands := slices.Clone(a.cands)
	failed := a.failed
	a.mu.Unlock()
	for _, lc := range cands {
		err := a.ice.AddVirtualCandidate(lc.cand, lc.conn)
		if err == nil {
			a.mu.Lock()
			lc.owned = true // pion/ice closes it from now on
			a.mu.Unlock()
			continue
		}
		// Not fatal: the other candidates may still connect. pion/ice did
		// not take this one, so Close releases it.
		a.log.Debug("local candidate not added", slog.Any("error", err), slog.String("candidate", lc.addr.String()))
	}
	a.log.Debug("ICE checks start", slog.Int("local", len(cands)), slog.Int("remote", added), slog.Bool("controlling", controlling))
	a.mu.Lock()
	a.remoteUfrag, a.remotePwd = m.Ufrag, m.Pwd
	a.mu.Unlock()
	rtcpConn := a.startRTCP(ctx, m, controlling)
	var conn *ice.Conn
	var err error
	if controlling {
		conn, err = a.ice.StartDial(m.Ufrag, m.Pwd)
	} else {
		conn, err = a.ice.StartAccept(m.Ufrag, m.Pwd)
	}
	if err != nil {
		return nil, fmt.Errorf("gather: connect: ICE: %w", err)
	}
	// pion/ice's AwaitConnect returns on a selected pair, the caller's
	// ctx or Close, but not when the checks fail; our state handler closes
	// failed then. Close (the agent's life) ends the wait too.
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLife := context.AfterFunc(a.life, cancel)
	defer stopLife()
	go func() {
		select {
		case <-failed:
			cancel()
		case <-wait.Done():
		}
	}()
	if err := a.ice.AwaitConnect(wait); err != nil {
		what := fmt.Sprintf("gather: connect: ICE (controlling=%t, %d remote candidates)", controlling, added)
		switch {
		case a.life.Err() != nil:
			return nil, fmt.Errorf("%s: %w", what, ErrClosed)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		case isClosed(failed):
			return nil, fmt.Errorf("%s: checks failed: %w", what, ErrConsentLost)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	mc := &MediaConn{agent: a, iceConn: conn}
	if rtcpConn != nil {
		a.awaitRTCP(ctx)
		mc.rtcp = rtcpConn
	}
	return mc, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// awaitRemoteCandidates waits until pion/ice, which adds remote candidates
// on its own goroutine, holds at least want of them, or until a bound of
// remoteCandidateWait or ctx ends. Reaching the bound is not an error: the
// checks then merely start with fewer known candidates.
func (a *Agent) awaitRemoteCandidates(ctx context.Context, want int) {
	awaitRemoteCandidates(ctx, a.log, a.ice, want)
}

func awaitRemoteCandidates(ctx context.Context, log *slog.Logger, ia *ice.Agent, want int) {
	if want == 0 {
		return
	}
	deadline := time.NewTimer(remoteCandidateWait)
	defer deadline.Stop()
	tick := time.NewTicker(remoteCandidatePoll)
	defer tick.Stop()
	for {
		if have, err := ia.GetRemoteCandidates(); err != nil || len(have) >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			log.Debug("remote candidates not all registered in time", slog.Int("want", want))
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) connectLegacy(m *sdpcand.Media) (*MediaConn, error) {
	if m.Unspecified || !m.Addr.IsValid() || m.Port <= 0 || m.Port > 65535 {
		return nil, fmt.Errorf("%w: m-line %d: c=%q port %d", ErrNoMedia, m.Index, m.Address, m.Port)
	}
	peer := netip.AddrPortFrom(m.Addr.Unmap(), uint16(m.Port))
	fam := netaddr.FamilyOf(peer.Addr())
	a.mu.Lock()
	want := a.offerDefault
	a.mu.Unlock()
	lc := a.legacyCandidate(fam, want)
	if lc == nil {
		return nil, fmt.Errorf("%w: peer %s", ErrNoLegacyPath, peer)
	}
	a.mu.Lock()
	lc.owned = true
	a.mu.Unlock()
	mode := ModeLegacyDirect
	if lc.typ == ice.CandidateTypeRelay {
		mode = ModeLegacyRelay
		// Install the permission now so the peer's first packets pass
		// the relay even before we send (RFC 8656 §9).
		if p, ok := lc.conn.(interface{ CreatePermissions(...net.Addr) error }); ok {
			if err := p.CreatePermissions(net.UDPAddrFromAddrPort(peer)); err != nil {
				return nil, fmt.Errorf("gather: connect: legacy peer %s: create permission: %w", peer, err)
			}
		}
		a.permitLegacyRTCP(lc, peer)
	}
	return &MediaConn{agent: a, legacy: lc, peer: peer, peerUDP: net.UDPAddrFromAddrPort(peer), mode: mode}, nil
}

// MediaConn is the connected media path: a datagram conn that carries RTP
// (and multiplexed RTCP) to the peer, over the ICE-selected pair or, for a
// legacy peer, from our allocation or socket to its c=/m= address. Read
// returns whole packets from the peer; Write sends one packet.
type MediaConn struct {
	agent   *Agent
	iceConn *ice.Conn

	// rtcp is ICE component 2 when the session does not multiplex RTCP
	// (see rtcp.go); nil otherwise.
	rtcp net.Conn

	legacy  *localCandidate
	peer    netip.AddrPort
	peerUDP *net.UDPAddr
	mode    Mode

	closeOnce sync.Once
	closeErr  error
	// lost is set once consent freshness failed (RFC 7675): Read and
	// Write fail with ErrConsentLost from then on.
	lost atomic.Bool
	// strangers counts datagrams a legacy path dropped because they came
	// from another address than the peer's.
	strangers atomic.Uint64
	// Counters for Stats, of the packets Read returned and Write sent.
	pktsIn, pktsOut, bytesIn, bytesOut atomic.Uint64
	lastIn                             atomic.Int64 // UnixNano of the last packet Read returned; 0: none
}

// errConsentLost is what Read and Write return once consent is lost.
var errConsentLost = fmt.Errorf("gather: media: %w", ErrConsentLost)

// loseConsent makes Read and Write fail with ErrConsentLost and wakes a
// Read blocked in pion/ice's buffer (which stays open after a failure).
func (c *MediaConn) loseConsent() {
	if c.iceConn == nil || c.lost.Swap(true) {
		return
	}
	_ = c.iceConn.SetReadDeadline(time.Now())
}

// regainConsent undoes loseConsent after an ICE restart.
func (c *MediaConn) regainConsent() {
	if c.iceConn != nil && c.lost.Swap(false) {
		_ = c.iceConn.SetReadDeadline(time.Time{})
	}
}

// Read reads one packet from the peer. Once consent is lost (no answer
// from the peer within Config.ConsentTimeout) it returns an error wrapping
// ErrConsentLost; after Close, one wrapping net.ErrClosed or ice.ErrClosed.
func (c *MediaConn) Read(p []byte) (int, error) {
	if c.iceConn != nil {
		if c.lost.Load() {
			return 0, errConsentLost
		}
		n, err := c.iceConn.Read(p)
		if err != nil && c.lost.Load() {
			return 0, errConsentLost
		}
		if err == nil {
			c.countIn(n)
		}
		return n, err
	}
	for {
		n, from, err := c.legacy.conn.ReadFrom(p)
		if err != nil {
			return 0, err
		}
		if unmapAP(addrPortOf(from)) != c.peer {
			c.strangers.Add(1)
			continue
		}
		c.countIn(n)
		return n, nil
	}
}

// Write sends one packet to the peer; once consent is lost it returns an
// error wrapping ErrConsentLost (RFC 7675 §5.1: no more media).
func (c *MediaConn) Write(p []byte) (int, error) {
	if c.iceConn != nil {
		if c.lost.Load() {
			return 0, errConsentLost
		}
		n, err := c.iceConn.Write(p)
		if err == nil {
			c.countOut(n)
		}
		return n, err
	}
	n, err := c.legacy.conn.WriteTo(p, c.peerUDP)
	if err == nil {
		c.countOut(n)
	}
	return n, err
}

func (c *MediaConn) countIn(n int) {
	c.pktsIn.Add(1)
	c.bytesIn.Add(uint64(n)) //nolint:gosec // n >= 0
	c.lastIn.Store(time.Now().UnixNano())
}

func (c *MediaConn) countOut(n int) {
	c.pktsOut.Add(1)
	c.bytesOut.Add(uint64(n)) //nolint:gosec // n >= 0
}

// MediaStats is a snapshot of a media path (MediaConn.Stats).
type MediaStats struct {
	// Path is the path in use, as Selected reports it: for ICE the pair
	// pion/ice sends on (its Conn.Write uses the selected pair), with its
	// candidate types, families and addresses.
	Path PathInfo
	// PacketsSent and BytesSent count what Write sent (payload bytes, no
	// UDP/TURN overhead); PacketsReceived and BytesReceived what Read
	// returned (a legacy path's strangers are not counted, see
	// Strangers). RTCP on its own component (RTCP) is not included.
	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64
	// LastReceived is when Read last returned a packet; zero before the first.
	LastReceived time.Time
	// RTT is the round-trip time of the latest connectivity or consent
	// check (RFC 7675 Binding request) answered on the selected pair, as
	// pion/ice measured it; 0 when unknown (a legacy path has no checks).
	RTT time.Duration
	// ChecksAnswered is how many Binding requests on the selected pair got
	// a success response (pion/ice's ResponsesReceived for the pair).
	ChecksAnswered uint64
}

// Stats returns the path's counters and, for ICE, the selected pair's
// round-trip time. It takes no lock on the packet path: the counters are
// atomics.
func (c *MediaConn) Stats() MediaStats {
	st := MediaStats{
		Path:        c.Selected(),
		PacketsSent: c.pktsOut.Load(), PacketsReceived: c.pktsIn.Load(),
		BytesSent: c.bytesOut.Load(), BytesReceived: c.bytesIn.Load(),
	}
	if ns := c.lastIn.Load(); ns != 0 {
		st.LastReceived = time.Unix(0, ns)
	}
	if c.iceConn != nil {
		if ps, ok := c.agent.ice.GetSelectedCandidatePairStats(); ok {
			st.RTT = time.Duration(ps.CurrentRoundTripTime * float64(time.Second))
			st.ChecksAnswered = ps.ResponsesReceived
		}
	}
	return st
}

// ReadRTP reads one packet into buf and parses it as RTP.
func (c *MediaConn) ReadRTP(buf []byte) (*rtp.Packet, error) {
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(buf[:n]); err != nil {
		return nil, fmt.Errorf("gather: rtp: %w", err)
	}
	return pkt, nil
}

// WriteRTP marshals pkt and sends it.
func (c *MediaConn) WriteRTP(pkt *rtp.Packet) error {
	b, err := pkt.Marshal()
	if err != nil {
		return fmt.Errorf("gather: rtp: %w", err)
	}
	_, err = c.Write(b)
	return err
}

// RTCP returns the separate RTCP path, ICE component 2, when the session
// does not multiplex RTCP (the offer had no a=rtcp-mux and both sides
// offered component-2 candidates); nil when RTCP rides on the media conn
// (RFC 5761) or the peer does no ICE. It is closed with the Agent.
func (c *MediaConn) RTCP() net.Conn { return c.rtcp }

// Strangers returns how many datagrams a legacy path dropped because they
// did not come from the peer's address (always 0 on an ICE path, where
// pion/ice does that filtering).
func (c *MediaConn) Strangers() uint64 { return c.strangers.Load() }

// Selected reports the path in use. For ICE it is the currently selected
// pair (it may change after a renomination).
func (c *MediaConn) Selected() PathInfo {
	if c.iceConn == nil {
		return PathInfo{
			Mode: c.mode, LocalType: c.legacy.typ.String(), RemoteType: "legacy",
			LocalFamily: c.legacy.family, RemoteFamily: netaddr.FamilyOf(c.peer.Addr()),
			Local: c.legacy.addr, Remote: c.peer, RelayProtocol: c.legacy.relayProto,
		}
	}
	pair, err := c.agent.ice.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return PathInfo{Mode: ModeICE}
	}
	info := PathInfo{
		Mode:       ModeICE,
		LocalType:  pair.Local.Type().String(),
		RemoteType: pair.Remote.Type().String(),
		Local:      candAddr(pair.Local),
		Remote:     candAddr(pair.Remote),
	}
	info.LocalFamily = netaddr.FamilyOf(info.Local.Addr())
	info.RemoteFamily = netaddr.FamilyOf(info.Remote.Addr())
	if r, ok := pair.Local.(*ice.CandidateRelay); ok {
		info.RelayProtocol = r.RelayProtocol()
	}
	return info
}

func candAddr(c ice.Candidate) netip.AddrPort {
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(c.Port())) //nolint:gosec // candidate ports are 16-bit
}

// LocalAddr returns our address on the path (see PathInfo.Local).
func (c *MediaConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(c.Selected().Local)
}

// RemoteAddr returns the peer's address on the path.
func (c *MediaConn) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(c.Selected().Remote)
}

// SetDeadline sets the read and write deadlines.
func (c *MediaConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// SetReadDeadline bounds Read.
func (c *MediaConn) SetReadDeadline(t time.Time) error {
	if c.iceConn != nil {
		if c.lost.Load() {
			return nil // keep the wake-up loseConsent set
		}
		return c.iceConn.SetReadDeadline(t)
	}
	return c.legacy.conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds Write.
func (c *MediaConn) SetWriteDeadline(t time.Time) error {
	if c.iceConn != nil {
		return c.iceConn.SetWriteDeadline(t)
	}
	return c.legacy.conn.SetWriteDeadline(t)
}

// Close ends the media path and closes the Agent (an Agent carries one
// call).
func (c *MediaConn) Close() error {
	return c.agent.Close()
}

// closeLegacy releases the legacy path's socket or allocation.
func (c *MediaConn) closeLegacy() error {
	c.closeOnce.Do(func() {
		if c.legacy != nil {
			c.closeErr = c.legacy.release()
		}
	})
	return c.closeErr
}

var _ net.Conn = (*MediaConn)(nil)
