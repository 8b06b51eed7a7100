package gather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
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
	a.mu.Unlock()
	return mc, nil
}

func (a *Agent) connectICE(ctx context.Context, m *sdpcand.Media, controlling bool) (*MediaConn, error) {
	// Remote candidates go in first, and we wait until pion has them all
	// before our sockets start answering checks. Otherwise the peer's first
	// check can arrive before its candidate is known, pion learns it as
	// peer-reflexive with a lower priority, and a worse pair (an IPv4 one
	// where IPv6 was preferred, RFC 8421) can win.
	added := 0
	for _, rc := range m.Candidates {
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
	cands := slices.Clone(a.cands)
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
	var conn *ice.Conn
	var err error
	if controlling {
		conn, err = a.ice.Dial(ctx, m.Ufrag, m.Pwd)
	} else {
		conn, err = a.ice.Accept(ctx, m.Ufrag, m.Pwd)
	}
	if err != nil {
		return nil, fmt.Errorf("gather: connect: ICE (controlling=%t, %d remote candidates): %w", controlling, added, err)
	}
	return &MediaConn{agent: a, iceConn: conn}, nil
}

// awaitRemoteCandidates waits until pion/ice, which adds remote candidates
// on its own goroutine, holds at least want of them, or until a bound of
// remoteCandidateWait or ctx ends. Reaching the bound is not an error: the
// checks then merely start with fewer known candidates.
func (a *Agent) awaitRemoteCandidates(ctx context.Context, want int) {
	if want == 0 {
		return
	}
	deadline := time.NewTimer(remoteCandidateWait)
	defer deadline.Stop()
	tick := time.NewTicker(remoteCandidatePoll)
	defer tick.Stop()
	for {
		if have, err := a.ice.GetRemoteCandidates(); err != nil || len(have) >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			a.log.Debug("remote candidates not all registered in time", slog.Int("want", want))
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

	legacy  *localCandidate
	peer    netip.AddrPort
	peerUDP *net.UDPAddr
	mode    Mode

	closeOnce sync.Once
	closeErr  error
	// strangers counts datagrams a legacy path dropped because they came
	// from another address than the peer's.
	strangers atomic.Uint64
}

// Read reads one packet from the peer.
func (c *MediaConn) Read(p []byte) (int, error) {
	if c.iceConn != nil {
		return c.iceConn.Read(p)
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
		return n, nil
	}
}

// Write sends one packet to the peer.
func (c *MediaConn) Write(p []byte) (int, error) {
	if c.iceConn != nil {
		return c.iceConn.Write(p)
	}
	return c.legacy.conn.WriteTo(p, c.peerUDP)
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
