package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

// A worker's life outside the packet path: its epoll set (udpbatch.Poller,
// parked in Go's netpoller, so a parked worker costs no thread), the
// control-plane commands that add and remove its sockets, and the stop.
//
// Why a private epoll and adopted descriptors: Go's netpoller would wake a
// goroutine per socket (pion's model: one goroutine per allocation, so one
// datagram per recvmmsg). Here one wake-up returns many ready relay sockets
// at once, and ends with one sendmmsg toward clients across all of them.

type cmdKind int

const (
	cmdAdd     cmdKind = iota // register c's descriptor in the worker's epoll set
	cmdRemove                 // take c's descriptor out, then acknowledge
	cmdBarrier                // acknowledge at the end of the current wake-up
	cmdStop                   // leave the loop
)

type command struct {
	kind cmdKind
	c    *Conn
	done chan struct{} // closed when processed (remove, barrier)
}

// loopState is the part of a worker that waits: its epoll set, the ready
// sockets by token, and the command queue the control plane rings.
type loopState struct {
	poll     *udpbatch.Poller
	events   *udpbatch.Events
	slots    []*Conn // by epoll token
	free     []int32
	cmds     chan command
	exited   chan struct{}
	started  bool
	stopping bool // a stop command was processed
}

func (w *worker) initLoop() {
	w.cmds = make(chan command, cmdQueueLen)
	w.exited = make(chan struct{})
	w.events = udpbatch.NewEvents(MaxEvents)
}

func (p *Plane) startWorkers() error {
	for i := range p.cfg.Workers {
		w := newWorker(p, i)
		if err := w.open(); err != nil {
			for _, o := range p.workers {
				_ = o.stop()
			}
			w.closeFDs()
			return err
		}
		p.workers = append(p.workers, w)
		p.cores = append(p.cores, w.stats)
	}
	for _, w := range p.workers {
		w.started = true
		go w.run()
	}
	return nil
}

func (w *worker) open() error {
	var err error
	if w.poll, err = udpbatch.NewPoller(); err != nil {
		if errors.Is(err, udpbatch.ErrUnsupported) {
			return ErrUnsupported
		}
		return fmt.Errorf("dataplane: worker %d: %w", w.id, err)
	}
	return w.openRawSenders()
}

func (w *worker) closeFDs() {
	w.closeRawSenders()
	if w.poll != nil {
		_ = w.poll.Close()
		w.poll = nil
	}
}

// run is the per-core loop: wait for ready sockets (level-triggered), read
// each once, flush the batches toward clients, run control commands, and
// repeat while anything may be left; then park in the netpoller.
func (w *worker) run() {
	defer close(w.exited)
	var stop bool
	// serve runs inside the netpoller's wait: it returns false to be parked
	// until the epoll set is readable, true to leave.
	serve := func() bool {
		for {
			n, err := w.poll.Poll(w.events)
			if err != nil {
				w.p.log.Error("dataplane: epoll_wait failed, worker stops", slog.Any("error", err), slog.Int("worker", w.id))
				stop = true
				return true
			}
			if n == 0 {
				return false
			}
			more := w.wake(n)
			if w.stopping {
				stop = true
				return true
			}
			if !more {
				// Every socket read came back short, so each one that
				// gets a datagram from now on wakes the set again: park
				// without one more empty poll.
				return false
			}
		}
	}
	for !stop {
		err := w.poll.Wait(serve)
		switch {
		case err == nil, errors.Is(err, os.ErrClosed):
			return
		default:
			w.p.log.Warn("dataplane: epoll not pollable, worker blocks in epoll_wait", slog.Any("error", err), slog.Int("worker", w.id))
			w.runBlocking()
			return
		}
	}
}

// runBlocking is the fallback loop with a blocking epoll_wait.
func (w *worker) runBlocking() {
	for !w.stopping {
		n, err := w.poll.WaitBlocking(w.events)
		if err != nil {
			w.p.log.Error("dataplane: epoll_wait failed, worker stops", slog.Any("error", err), slog.Int("worker", w.id))
			return
		}
		w.wake(n)
	}
}

// wake serves the n ready sockets of one poll. It reports whether some
// socket may hold more datagrams than it read (a full batch), or more
// sockets may be ready than one poll returned.
func (w *worker) wake(n int) (more bool) {
	w.begin()
	ring := false
	for i := range n {
		tok := w.events.Token(i)
		if tok == udpbatch.WakeToken {
			ring = true
			continue
		}
		c := w.slots[tok]
		if c == nil {
			continue
		}
		if c.kind == kindListener {
			w.serveListener(c)
		} else {
			w.serveRelay(c)
		}
	}
	w.end()
	if ring && w.commands() {
		w.stopping = true
	}
	more = w.more || w.events.Full(n)
	w.more = false
	return more
}

// commands drains the wake-up and the command queue; it reports whether the
// worker must stop.
func (w *worker) commands() bool {
	w.poll.Drain()
	for {
		select {
		case cmd := <-w.cmds:
			switch cmd.kind {
			case cmdAdd:
				w.add(cmd.c)
			case cmdRemove:
				w.remove(cmd.c)
				close(cmd.done)
			case cmdBarrier:
				close(cmd.done)
			case cmdStop:
				return true
			}
		default:
			return false
		}
	}
}

func (w *worker) add(c *Conn) {
	var slot int32
	if n := len(w.free); n > 0 {
		slot, w.free = w.free[n-1], w.free[:n-1]
	} else {
		slot = int32(len(w.slots))
		w.slots = append(w.slots, nil)
	}
	if err := w.poll.Add(c.fd, slot); err != nil {
		w.free = append(w.free, slot)
		w.p.log.Error("dataplane: epoll_ctl add failed, socket not served", slog.Any("error", err), slog.Any("local", c.local))
		return
	}
	w.slots[slot] = c
	c.slot = slot
}

func (w *worker) remove(c *Conn) {
	if c.slot < 0 || int(c.slot) >= len(w.slots) || w.slots[c.slot] != c {
		return
	}
	_ = w.poll.Remove(c.fd)
	w.slots[c.slot] = nil
	w.free = append(w.free, c.slot)
	c.slot = -1
}

// send queues a command and rings the worker; false if the worker is gone.
func (w *worker) send(cmd command) bool {
	select {
	case w.cmds <- cmd:
	case <-w.exited:
		return false
	}
	return w.poll != nil && w.poll.Wake() == nil
}

// stop ends the loop, waits for it, and closes the worker's descriptors.
func (w *worker) stop() error {
	if w.started {
		w.send(command{kind: cmdStop})
		<-w.exited
	}
	w.closeFDs()
	return nil
}

// openRawSenders opens the worker's raw sockets when the plane is set to
// use them; a refusal (no CAP_NET_RAW) leaves that family on the UDP
// sockets and is an error only in RawSendOn mode.
func (w *worker) openRawSenders() error {
	if w.p.cfg.RawSend == RawSendOff {
		return nil
	}
	var failed []string
	var firstErr error
	for fam, name := range [2]string{"IPv4", "IPv6"} {
		s, err := udpbatch.OpenRawSender(fam == 1, IdealBatchSize, rawSockBuf)
		if errors.Is(err, udpbatch.ErrFamilyUnavailable) {
			continue // the family is off in this kernel: no relay sockets of it either
		}
		if err != nil {
			failed = append(failed, name)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		q := &rawQueue{s: s}
		q.refused = func(i int, tooBig bool) { w.rawRefused(q, i, tooBig) }
		w.raw[fam] = q
	}
	if firstErr != nil {
		err := fmt.Errorf("%s raw socket: %w", strings.Join(failed, " and "), firstErr)
		if w.p.cfg.RawSend == RawSendOn {
			return fmt.Errorf("dataplane: worker %d: %w", w.id, err)
		}
		if w.id == 0 {
			w.p.log.Info("dataplane: raw sockets unavailable, client-to-peer datagrams are sent one per syscall", slog.Any("error", err))
		}
	}
	return nil
}

func (w *worker) closeRawSenders() {
	for i, q := range w.raw {
		if q != nil {
			_ = q.s.Close()
			w.raw[i] = nil
		}
	}
}

// RawSending reports whether the workers send client-to-peer datagrams on
// raw sockets (Config.RawSend, and the process allowed to open them).
func (p *Plane) RawSending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers) > 0 && (p.workers[0].raw[0] != nil || p.workers[0].raw[1] != nil)
}
