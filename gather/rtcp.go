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
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

// RTCP on its own port. A peer whose offer has no a=rtcp-mux (RFC 5761
// §5.1.1; baresip with "rtcp_mux no", many desk phones) sends RTCP to a
// second transport address: ICE component 2 (RFC 8445 §5.1.1.1), or for a
// peer without ICE the address of our a=rtcp attribute (RFC 3605).
//
// pion/ice v4.4.8's Agent is single-component: it gathers and nominates
// for component 1 only (every candidate it makes says ComponentRTP) and
// exposes one Conn. It does not look at the component when it pairs, so a
// second ice.Agent holding only component-2 candidates, with the same
// ufrag and password (RFC 8445 §5.3: the credentials are per data stream,
// shared by its components), runs component 2's checks as the peer
// expects. That is what rtcpLeg is.
//
// Component 2 has a host candidate next to each component-1 host candidate
// and a relayed one (another allocation, same server, family and
// transport) next to each relayed one; no server-reflexive one yet. The
// RTCP agent is not restarted by Restart, and its consent state
// is not reported (OnStateChange follows component 1).

// rtcpComponent is ICE component 2 (RTCP without rtcp-mux).
const rtcpComponent = 2

// rtcpConnectWait bounds how long Connect waits, once RTP is up, for
// component 2's checks (they run at the same time, so normally no wait).
const rtcpConnectWait = 2 * time.Second

// rtcpLeg is component 2: its sockets and, once Connect runs with an ICE
// peer, its ice.Agent.
type rtcpLeg struct {
	mu     sync.Mutex
	cands  []*localCandidate
	agent  *ice.Agent // nil until connectRTCP
	closed bool
}

// close releases the RTCP agent (which closes the candidates it took
// over) and the sockets it did not take.
func (r *rtcpLeg) close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ia := r.agent
	var cands []*localCandidate
	for _, lc := range r.cands {
		if !lc.owned {
			cands = append(cands, lc)
		}
	}
	r.mu.Unlock()
	var errs []error
	if ia != nil {
		if err := ia.Close(); err != nil && !errors.Is(err, ice.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, lc := range cands { // ia.Close closed the others
		if err := lc.release(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// iceCandidates returns component 2's candidates for the answer.
func (r *rtcpLeg) iceCandidates() []ice.Candidate {
	out := make([]ice.Candidate, 0, len(r.cands))
	for _, lc := range r.cands {
		out = append(out, lc.cand)
	}
	return out
}

// addrs returns, per family of rtp (the RTP default addresses), the RTCP
// address to write in a=rtcp: the socket next to the same IP when there is
// one, else the first of that family.
func (r *rtcpLeg) addrs(rtp map[netaddr.Family]netip.AddrPort) map[netaddr.Family]netip.AddrPort {
	out := map[netaddr.Family]netip.AddrPort{}
	for f, ap := range rtp {
		for _, lc := range r.cands {
			if lc.family != f {
				continue
			}
			if _, ok := out[f]; !ok || lc.addr.Addr() == ap.Addr() {
				out[f] = lc.addr
			}
		}
	}
	return out
}

// ensureRTCP opens component 2's sockets, once: one beside each host
// candidate of component 1, same address and foundation (RFC 8445
// §5.1.1.3), priority for component 2, and an allocation beside each
// relayed one. It returns nil (and no error) when
// no socket could be opened; the answer then has no a=rtcp.
func (a *Agent) ensureRTCP(ctx context.Context) (*rtcpLeg, error) {
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	if a.rtcp != nil {
		r := a.rtcp
		a.mu.Unlock()
		return r, nil
	}
	var hosts, relays []*localCandidate
	for _, lc := range a.cands {
		switch {
		case lc.typ == ice.CandidateTypeHost:
			hosts = append(hosts, lc)
		case lc.typ == ice.CandidateTypeRelay && lc.again != nil:
			relays = append(relays, lc)
		}
	}
	a.mu.Unlock()
	r := &rtcpLeg{}
	for _, h := range hosts {
		lc, err := rtcpHostCandidate(h)
		if err != nil {
			a.log.Debug("RTCP socket not opened", slog.Any("error", err), slog.String("rtp", h.addr.String()))
			continue
		}
		r.cands = append(r.cands, lc)
	}
	// One more allocation per relayed candidate, all at once, bounded by
	// the gathering timeout: a relayed component 1 needs a relayed
	// component 2 (RTCP across families, or through the relay to a legacy
	// peer).
	actx, cancel := waitCtx(ctx, a.timeout)
	stop := context.AfterFunc(a.life, cancel)
	results := make(chan jobResult, len(relays))
	for _, rl := range relays {
		go func() { results <- rl.again(actx) }()
	}
	for range relays {
		res := <-results
		if res.cand == nil {
			a.log.Debug("RTCP allocation failed", slog.String("what", res.what), slog.Any("error", res.err))
			continue
		}
		r.cands = append(r.cands, res.cand)
	}
	stop()
	cancel()
	if len(r.cands) == 0 {
		return nil, nil
	}
	a.mu.Lock()
	if a.closed || a.rtcp != nil {
		prev, closed := a.rtcp, a.closed
		a.mu.Unlock()
		_ = r.close()
		if closed {
			return nil, ErrClosed
		}
		return prev, nil
	}
	a.rtcp = r
	a.mu.Unlock()
	return r, nil
}

// rtcpHostCandidate opens a UDP socket on rtp's address and makes it rtp's
// component-2 twin.
func rtcpHostCandidate(rtp *localCandidate) (*localCandidate, error) {
	addr, err := netip.ParseAddr(rtp.cand.Address()) // keeps a link-local zone
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP(udpNetwork(rtp.family), net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return nil, err
	}
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	cand, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network:    "udp",
		Address:    addr.String(),
		Port:       int(port),
		Component:  rtcpComponent,
		Priority:   candidatePriority(typePrefHost, rtp.cand.Priority()>>8&0xffff, rtcpComponent),
		Foundation: rtp.cand.Foundation(),
	})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("RTCP host candidate %s: %w", addr, err)
	}
	return &localCandidate{
		cand: cand, conn: conn, addr: netip.AddrPortFrom(addr.WithZone(""), port),
		family: rtp.family, typ: ice.CandidateTypeHost, release: onceCloser(conn.Close),
	}, nil
}

// startRTCP starts component 2's checks against m's component-2
// candidates on a second ice.Agent with our credentials, in the same role
// as component 1. It returns the component-2 conn (not yet connected), or
// nil when the session multiplexes or either side has no component 2.
func (a *Agent) startRTCP(ctx context.Context, m *sdpcand.Media, controlling bool) *ice.Conn {
	a.mu.Lock()
	r := a.rtcp
	a.mu.Unlock()
	if r == nil || m.RTCPMux {
		return nil
	}
	var remotes []ice.Candidate
	for _, rc := range m.Candidates {
		if rc.Component() == rtcpComponent {
			remotes = append(remotes, rc)
		}
	}
	if len(remotes) == 0 {
		return nil
	}
	ufrag, pwd := a.Credentials()
	ia, err := ice.NewAgentWithOptions(append(slices.Clone(a.iceOpts), ice.WithLocalCredentials(ufrag, pwd))...)
	if err != nil {
		a.log.Warn("RTCP ICE agent not created", slog.Any("error", err))
		return nil
	}
	r.mu.Lock()
	if r.closed || r.agent != nil {
		r.mu.Unlock()
		_ = ia.Close()
		return nil
	}
	r.agent = ia
	cands := slices.Clone(r.cands)
	r.mu.Unlock()
	added := 0
	for _, rc := range remotes {
		if err := ia.AddRemoteCandidate(rc); err == nil {
			added++
		}
	}
	awaitRemoteCandidates(ctx, a.log, ia, added)
	for _, lc := range cands {
		if err := ia.AddVirtualCandidate(lc.cand, lc.conn); err != nil {
			a.log.Debug("RTCP candidate not added", slog.Any("error", err), slog.String("candidate", lc.addr.String()))
			continue
		}
		r.mu.Lock()
		lc.owned = true
		r.mu.Unlock()
	}
	var conn *ice.Conn
	if controlling {
		conn, err = ia.StartDial(m.Ufrag, m.Pwd)
	} else {
		conn, err = ia.StartAccept(m.Ufrag, m.Pwd)
	}
	if err != nil {
		a.log.Warn("RTCP ICE checks not started", slog.Any("error", err))
		return nil
	}
	return conn
}

// awaitRTCP waits (bounded by rtcpConnectWait) for component 2's checks.
// A failure is logged, not fatal: RTP flows without RTCP.
func (a *Agent) awaitRTCP(ctx context.Context) {
	a.mu.Lock()
	r := a.rtcp
	a.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	ia := r.agent
	r.mu.Unlock()
	if ia == nil {
		return
	}
	wait, cancel := waitCtx(ctx, rtcpConnectWait)
	defer cancel()
	if err := ia.AwaitConnect(wait); err != nil {
		a.log.Warn("RTCP component not connected", slog.Any("error", err))
	}
}

// permitLegacyRTCP installs, on the RTCP allocation beside the legacy
// path's relayed candidate rtp, a permission for the peer (RFC 8656 §9),
// so its RTCP passes the relay before we send any.
func (a *Agent) permitLegacyRTCP(rtp *localCandidate, peer netip.AddrPort) {
	a.mu.Lock()
	r := a.rtcp
	a.mu.Unlock()
	if r == nil || rtp.typ != ice.CandidateTypeRelay {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, lc := range r.cands {
		if lc.typ != ice.CandidateTypeRelay || lc.addr.Addr() != rtp.addr.Addr() {
			continue
		}
		if p, ok := lc.conn.(interface{ CreatePermissions(...net.Addr) error }); ok {
			if err := p.CreatePermissions(net.UDPAddrFromAddrPort(peer)); err != nil {
				a.log.Warn("RTCP permission not installed", slog.Any("error", err), slog.String("peer", peer.String()))
			}
		}
		return
	}
}
