package gather

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Stats says what one gathering found and what it gave up on.
type Stats struct {
	// Host, ServerReflexive and Relayed count the candidates of each type
	// that were kept.
	Host, ServerReflexive, Relayed int
	// Redundant counts server-reflexive answers equal to their base (no
	// NAT in between), dropped per RFC 8445 §5.1.3.
	Redundant int
	// Failed lists one line per STUN/TURN attempt that failed, e.g.
	// "turn:[::1]:3478 IPv4 relay: ...".
	Failed []string
	// Late counts attempts still running at the deadline (abandoned, their
	// sockets closed).
	Late int
	// DeadlineHit is true when the gathering deadline ended it.
	DeadlineHit bool
	// RAFAdded counts Allocate requests to which REQUESTED-ADDRESS-FAMILY
	// was added because pion/turn left it out (every IPv4 request).
	RAFAdded int
}

// Stats returns what the last gathering found.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Failed = slices.Clone(s.Failed)
	return s
}

// jobResult is what a STUN or TURN attempt reports.
type jobResult struct {
	cand      *localCandidate
	redundant bool
	err       error
	what      string
}

// Gather finds the agent's candidates: host candidates at once, then
// server-reflexive and relayed ones as the servers answer, all within
// Config.Timeout (or ctx, whichever ends first). onCandidate, when not nil,
// is called once per candidate as it is found (trickle ICE, RFC 8838) and
// finally once with nil: the end-of-candidates signal. Calls are serial,
// from the calling goroutine. The returned slice holds every candidate in
// priority order. A second call returns (and replays) the first result.
func (a *Agent) Gather(ctx context.Context, onCandidate func(ice.Candidate)) ([]ice.Candidate, error) {
	emit := func(c ice.Candidate) {
		if onCandidate != nil {
			onCandidate(c)
		}
	}
	a.gatherMu.Lock()
	defer a.gatherMu.Unlock()
	a.mu.Lock()
	if err := a.checkOpen(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	if a.gathered {
		err := a.gatherErr
		a.mu.Unlock()
		cands := a.localCandidates()
		for _, c := range cands {
			emit(c)
		}
		emit(nil)
		return cands, err
	}
	a.mu.Unlock()

	err := a.gather(ctx, emit)
	emit(nil)

	a.mu.Lock()
	a.gathered = true
	if err == nil && len(a.cands) == 0 {
		err = ErrNoCandidates
	}
	a.gatherErr = err
	sort.SliceStable(a.cands, func(i, j int) bool { return a.cands[i].cand.Priority() > a.cands[j].cand.Priority() })
	a.mu.Unlock()
	return a.localCandidates(), err
}

func (a *Agent) gather(ctx context.Context, emit func(ice.Candidate)) error {
	ctx, cancel := waitCtx(ctx, a.timeout)
	defer cancel()

	hosts, err := hostAddrs(&a.cfg, a.fams)
	if err != nil {
		return fmt.Errorf("gather: host addresses: %w", err)
	}
	for pos, addr := range interleave(hosts) {
		lc, err := a.hostCandidate(addr, pos)
		if err != nil {
			a.log.Debug("host candidate skipped", slog.Any("error", err), slog.String("addr", addr.String()))
			a.addFailure(fmt.Sprintf("host %s: %v", addr, err))
			continue
		}
		if !a.keep(lc) {
			return ErrClosed
		}
		emit(lc.cand)
	}

	var jobs []func(context.Context) jobResult
	for i, s := range a.stun {
		for _, f := range a.fams {
			jobs = append(jobs, func(ctx context.Context) jobResult { return a.srflxJob(ctx, s, i, f) })
		}
	}
	for i, s := range a.turn {
		for _, rf := range a.relayFams {
			jobs = append(jobs, func(ctx context.Context) jobResult { return a.relayJob(ctx, s, i, rf) })
		}
	}
	results := make(chan jobResult, len(jobs))
	var wg sync.WaitGroup
	for _, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- job(ctx)
		}()
	}
	// abandon stops the attempts still running and releases whatever they
	// found in the race: it is not offered, the offer is on its way.
	abandon := func() {
		cancel()
		wg.Wait()
		close(results)
		for r := range results {
			if r.cand != nil {
				_ = r.cand.release()
			}
		}
	}
	for pending := len(jobs); pending > 0; pending-- {
		var r jobResult
		select {
		case r = <-results:
		case <-ctx.Done():
			a.mu.Lock()
			a.stats.DeadlineHit = true
			a.stats.Late += pending
			a.mu.Unlock()
			abandon()
			return nil
		}
		switch {
		case r.err != nil:
			a.log.Debug("candidate attempt failed", slog.Any("error", r.err), slog.String("attempt", r.what))
			a.addFailure(fmt.Sprintf("%s: %v", r.what, r.err))
		case r.redundant:
			a.mu.Lock()
			a.stats.Redundant++
			a.mu.Unlock()
		case r.cand != nil:
			if !a.keep(r.cand) {
				abandon()
				return ErrClosed
			}
			emit(r.cand.cand)
		}
	}
	return nil
}

func (a *Agent) addFailure(s string) {
	a.mu.Lock()
	a.stats.Failed = append(a.stats.Failed, s)
	a.mu.Unlock()
}

// keep records a new candidate; false (and the candidate released) when
// the agent was closed meanwhile.
func (a *Agent) keep(lc *localCandidate) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		_ = lc.release()
		return false
	}
	a.cands = append(a.cands, lc)
	switch lc.typ {
	case ice.CandidateTypeHost:
		a.stats.Host++
	case ice.CandidateTypeServerReflexive:
		a.stats.ServerReflexive++
	case ice.CandidateTypeRelay:
		a.stats.Relayed++
	}
	return true
}

// hostCandidate opens a UDP socket on addr and makes it a host candidate
// with the local preference of interleave position pos.
func (a *Agent) hostCandidate(addr netip.Addr, pos int) (*localCandidate, error) {
	fam := netaddr.FamilyOf(addr)
	conn, err := net.ListenUDP(udpNetwork(fam), net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		return nil, err
	}
	local := unmapAP(conn.LocalAddr().(*net.UDPAddr).AddrPort())
	cand, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network:    "udp",
		Address:    addr.String(),
		Port:       int(local.Port()),
		Component:  rtpComponent,
		Priority:   candidatePriority(typePrefHost, hostLocalPref(pos), rtpComponent),
		Foundation: foundation("host", addr, netip.Addr{}, "udp"),
	})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("host candidate %s: %w", local, err)
	}
	return &localCandidate{
		cand: cand, conn: conn, addr: netip.AddrPortFrom(addr.WithZone(""), local.Port()),
		family: fam, typ: ice.CandidateTypeHost, release: onceCloser(conn.Close),
	}, nil
}

// errNoRoute marks an attempt skipped because the family is unusable: no
// server address or no route of that family (an IPv6-only host, say).
var errNoRoute = errors.New("no route")

// sourceFor returns the local address the kernel would send from to reach
// dst, without sending anything (a connected UDP socket only routes).
func sourceFor(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP(udpNetwork(netaddr.FamilyOf(dst.Addr())), nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w to %s: %w", errNoRoute, dst, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
