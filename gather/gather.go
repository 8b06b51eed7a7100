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
	// Ready is true when the gathering ended early because every
	// requested relay family had a relayed candidate (the attempts still
	// running then are counted in Late).
	Ready bool
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

// gatherRun is one gathering, running on a goroutine of its own so that
// any number of Gather calls (and Offer, Answer, from inside a Gather
// callback too) can follow it without holding a lock while they call back.
type gatherRun struct {
	done      chan struct{} // closed when the gathering ended
	hostsDone chan struct{} // closed once the host candidates are in
	changed   chan struct{} // closed and replaced (under Agent.mu) at every new candidate
	finished  bool          // under Agent.mu: done is closed
	err       error         // under Agent.mu, valid once finished
}

// Gather finds the agent's candidates: host candidates at once, then
// server-reflexive and relayed ones as the servers answer, all within
// Config.Timeout. onCandidate, when not nil, is called once per candidate
// as it is found (trickle ICE, RFC 8838) and finally once with nil: the
// end-of-candidates signal. Calls are serial, from the calling goroutine,
// with no lock held: onCandidate may call Offer, Answer or Gather. The
// returned slice holds every candidate in priority order. A later call
// follows the same gathering (and replays what it found).
//
// When ctx ends first Gather returns an error wrapping ctx.Err(); the
// gathering it started is abandoned (its sockets closed) unless an offer
// or answer already carries its candidates, and the next call starts
// afresh. Close stops a gathering in progress.
func (a *Agent) Gather(ctx context.Context, onCandidate func(ice.Candidate)) ([]ice.Candidate, error) {
	emit := func(c ice.Candidate) {
		if onCandidate != nil {
			onCandidate(c)
		}
	}
	run, mine, err := a.startGather(ctx)
	if err != nil {
		return nil, err
	}
	for next := 0; ; {
		a.mu.Lock()
		batch := make([]ice.Candidate, 0, len(a.cands)-min(next, len(a.cands)))
		for _, lc := range a.cands[min(next, len(a.cands)):] {
			batch = append(batch, lc.cand)
		}
		next += len(batch)
		finished, changed, runErr := run.finished, run.changed, run.err
		a.mu.Unlock()
		for _, c := range batch {
			emit(c)
		}
		if len(batch) > 0 {
			continue
		}
		if finished {
			if runErr != nil && !errors.Is(runErr, ErrNoCandidates) {
				return nil, runErr
			}
			emit(nil)
			return a.localCandidates(), runErr
		}
		select {
		case <-changed:
		case <-run.done:
		case <-ctx.Done():
			if mine {
				// Our ctx ends the run too: wait until it has released
				// its sockets, so that a retry starts afresh.
				<-run.done
			}
			return nil, fmt.Errorf("gather: %w", ctx.Err())
		}
	}
}

// startGather returns the current gathering, starting one (bounded by the
// agent's life and ctx; mine is then true) when there is none.
func (a *Agent) startGather(ctx context.Context) (run *gatherRun, mine bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkOpen(); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("gather: %w", err)
	}
	if a.run != nil {
		return a.run, false, nil
	}
	run = &gatherRun{done: make(chan struct{}), hostsDone: make(chan struct{}), changed: make(chan struct{})}
	a.run = run
	a.stats = Stats{}
	runCtx, cancel := context.WithCancelCause(a.life)
	stop := context.AfterFunc(ctx, func() { cancel(ctx.Err()) })
	go func() {
		defer cancel(nil)
		err := a.gather(runCtx, run)
		cutShort := !stop() && ctx.Err() != nil
		a.mu.Lock()
		defer a.mu.Unlock()
		// A gathering cut short by the caller's ctx (not by Close, not by
		// the deadline) is not sticky, unless its candidates were already
		// offered: its candidates are released and the next call starts
		// again.
		if cutShort && !a.closed {
			err = fmt.Errorf("gather: %w", ctx.Err())
			if !a.offered && !a.iceStarted {
				for _, lc := range a.cands {
					_ = lc.release()
				}
				a.cands = nil
				a.run = nil
			}
		} else if a.closed {
			err = ErrClosed
		}
		if err == nil && len(a.cands) == 0 {
			err = ErrNoCandidates
		}
		run.err = err
		run.finished = true
		a.gathered = a.run == run
		a.gatherErr = err
		select {
		case <-run.hostsDone:
		default:
			close(run.hostsDone)
		}
		close(run.done)
	}()
	return run, true, nil
}

func (a *Agent) gather(ctx context.Context, run *gatherRun) error {
	ctx, cancel := waitCtx(ctx, a.timeout)
	defer cancel()
	hostsIn := func() {
		select {
		case <-run.hostsDone:
		default:
			close(run.hostsDone)
		}
	}

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
		if !a.keep(lc, run) {
			return ErrClosed
		}
	}
	hostsIn()

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
	// Ready policy: once every requested relay family has a relayed
	// candidate, the offer can carry a path to any peer; the attempts
	// still running (a dead server, say) get a short grace, not the whole
	// deadline.
	relayed := map[netaddr.Family]bool{}
	var ready <-chan time.Time
	for pending := len(jobs); pending > 0; pending-- {
		var r jobResult
		select {
		case r = <-results:
		case <-ready:
			a.mu.Lock()
			a.stats.Ready = true
			a.stats.Late += pending
			a.mu.Unlock()
			abandon()
			return nil
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
			if !a.keep(r.cand, run) {
				abandon()
				return ErrClosed
			}
			if r.cand.typ == ice.CandidateTypeRelay && ready == nil {
				relayed[r.cand.family] = true
				if allRelayed(a.relayFams, relayed) {
					t := time.NewTimer(readyGrace)
					defer t.Stop()
					ready = t.C
				}
			}
		}
	}
	return nil
}

// readyGrace is how long a gathering goes on once every requested relay
// family has its relayed candidate: enough for the other live servers on
// the same network to answer (a loopback or LAN round trip, a few
// Internet ones), far less than the deadline a dead server would cost.
const readyGrace = 200 * time.Millisecond

func allRelayed(want []netaddr.Family, got map[netaddr.Family]bool) bool {
	for _, f := range want {
		if !got[f] {
			return false
		}
	}
	return len(want) > 0
}

func (a *Agent) addFailure(s string) {
	a.mu.Lock()
	a.stats.Failed = append(a.stats.Failed, s)
	a.mu.Unlock()
}

// keep records a new candidate and wakes the Gather calls following run;
// false (and the candidate released) when the agent was closed meanwhile.
// Once Connect started the checks, the candidate goes to pion/ice at once
// (trickle, RFC 8838).
func (a *Agent) keep(lc *localCandidate, run *gatherRun) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		_ = lc.release()
		return false
	}
	a.cands = append(a.cands, lc)
	close(run.changed)
	run.changed = make(chan struct{})
	if a.iceStarted {
		if err := a.ice.AddVirtualCandidate(lc.cand, lc.conn); err == nil {
			lc.owned = true
		} else {
			a.log.Debug("trickled local candidate not added", slog.Any("error", err), slog.String("candidate", lc.addr.String()))
		}
	}
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
