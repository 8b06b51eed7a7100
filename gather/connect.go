package gather

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

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
	return &MediaConn{agent: a, iceConn: conn}, nil
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
