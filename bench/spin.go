package bench

import (
	"context"
	"runtime"
	"time"

	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

// spinner is the pacer of a spinning load ([LoadConfig.Spin]): while the
// next event is not due it polls every client-leg socket and peer socket
// without blocking, so the generator never sleeps and nothing sending to it
// has to wake it. The receiver goroutines stay as they are and take over
// between runs; the client poller's lock and each peer socket's rx lock keep
// the two from accounting for one socket at once.
type spinner struct {
	l      *Load
	events *udpbatch.Events
	peers  []*peerSock
	// ms is the receive batch for every socket, pay drainClient's scratch.
	ms  *udpbatch.Msgs
	pay []byte
	// idle is the time spent in polls that found nothing.
	idle time.Duration
}

func (l *Load) newSpinner() *spinner {
	s := &spinner{
		l:      l,
		events: udpbatch.NewEvents(128),
		ms:     newRxMsgs(),
		pay:    make([]byte, 1500),
	}
	for _, p := range l.peers {
		s.peers = append(s.peers, p)
	}
	return s
}

// poll reads what is ready on every socket once and returns how many
// datagrams it read.
func (s *spinner) poll() int {
	got := 0
	n, err := s.l.poller.p.Poll(s.events)
	if err == nil {
		for i := range n {
			if s.l.drainClient(s.l.poller, s.events.Token(i), s.ms, s.pay) {
				got++
			}
		}
	}
	for _, p := range s.peers {
		n, _ := s.l.readPeer(p, p.fd, s.ms, true)
		got += n
	}
	if got > 0 {
		s.l.spunRx.Add(uint64(got))
	}
	return got
}

// step polls once; a poll that found nothing counts as idle, and lets the
// load's other goroutines (pion's timers, the readers) have the CPU.
func (s *spinner) step() {
	t0 := s.l.clock()
	if s.poll() > 0 {
		return
	}
	runtime.Gosched()
	s.idle += s.l.clock() - t0
}

func (s *spinner) waitUntil(ctx context.Context, due time.Duration) bool {
	for s.l.clock() < due {
		select {
		case <-ctx.Done():
			return false
		default:
		}
		s.step()
	}
	return true
}

// drain polls until done reports every packet in or the clock reaches
// deadline.
func (s *spinner) drain(ctx context.Context, deadline time.Duration, done func() bool) {
	for !done() && s.l.clock() < deadline && ctx.Err() == nil {
		s.step()
	}
}
