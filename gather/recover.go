package gather

import (
	"log/slog"
	"time"

	"github.com/pion/ice/v4"
)

// Recovery from a network change. When the selected pair stops answering
// (its local address went away, its socket was closed: pion/ice reports
// "disconnected"), the controlling agent nominates another pair with a
// different local candidate, best priority first, using pion/ice's
// renomination (RenominateCandidate, draft-thatcher-ice-renomination; the
// controlled side follows "last nomination wins"). A peer that does not
// do renomination keeps its own choice; an ICE restart (Restart) is then
// the way out. pion/ice v4.4.8 neither renominates on a dead pair by
// itself (its automatic renomination compares quality scores, not
// liveness) nor reacts to an interface going away.

// recoverAttempts bounds the nominations tried per disconnection, one per
// recoverInterval.
const (
	recoverAttempts = 8
	recoverInterval = 250 * time.Millisecond
)

// recoverPath renominates while the path is disconnected. It runs on its
// own goroutine, started by setState.
func (a *Agent) recoverPath() {
	a.mu.Lock()
	controlling := a.controlling
	a.mu.Unlock()
	if !controlling {
		return
	}
	tried := map[[2]string]bool{}
	for range recoverAttempts {
		if a.State() != StateDisconnected || a.life.Err() != nil {
			return
		}
		local, remote := a.alternatePair(tried)
		if local == nil {
			return
		}
		tried[[2]string{local.ID(), remote.ID()}] = true
		if err := a.ice.RenominateCandidate(local, remote); err != nil {
			a.log.Debug("renomination failed", slog.Any("error", err))
		} else {
			a.log.Info("media path: renominating after disconnection",
				slog.String("local", local.String()), slog.String("remote", remote.String()))
		}
		select {
		case <-a.life.Done():
			return
		case <-time.After(recoverInterval):
		}
	}
}

// alternatePair returns the best-priority pair not yet tried whose local
// candidate is not the selected pair's, and not failed.
func (a *Agent) alternatePair(tried map[[2]string]bool) (ice.Candidate, ice.Candidate) {
	sel, err := a.ice.GetSelectedCandidatePair()
	if err != nil || sel == nil {
		return nil, nil
	}
	locals, err := a.ice.GetLocalCandidates()
	if err != nil {
		return nil, nil
	}
	remotes, err := a.ice.GetRemoteCandidates()
	if err != nil {
		return nil, nil
	}
	byID := map[string]ice.Candidate{}
	for _, c := range append(locals, remotes...) {
		byID[c.ID()] = c
	}
	var bestL, bestR ice.Candidate
	var bestPrio uint64
	for _, ps := range a.ice.GetCandidatePairsStats() {
		if ps.State == ice.CandidatePairStateFailed || ps.LocalCandidateID == sel.Local.ID() ||
			tried[[2]string{ps.LocalCandidateID, ps.RemoteCandidateID}] {
			continue
		}
		l, r := byID[ps.LocalCandidateID], byID[ps.RemoteCandidateID]
		if l == nil || r == nil {
			continue
		}
		prio := pairPriority(l.Priority(), r.Priority())
		if bestL == nil || prio > bestPrio {
			bestL, bestR, bestPrio = l, r, prio
		}
	}
	return bestL, bestR
}

// pairPriority is RFC 8445 §6.1.2.3 with us controlling.
func pairPriority(g, d uint32) uint64 {
	lo, hi := min(g, d), max(g, d)
	var x uint64
	if g > d {
		x = 1
	}
	return 1<<32*uint64(lo) + 2*uint64(hi) + x
}
