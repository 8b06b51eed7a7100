//go:build linux

package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// wakeSlot is the epoll data value of the worker's eventfd.
const wakeSlot = -1

// cmdQueueLen bounds the control-plane commands waiting for one worker.
const cmdQueueLen = 1024

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

// epollState is the Linux part of a worker: its own epoll instance holding
// its sockets and an eventfd that control-plane commands ring.
//
// Why a private epoll and raw descriptors: Go's netpoller would wake a
// goroutine per socket (pion's model: one goroutine per allocation, so one
// datagram per recvmmsg). Here one blocking epoll_wait per core returns many
// ready relay sockets at once, and the wake-up ends with one sendmmsg toward
// clients across all of them. Adopted sockets are duplicated out of the
// net package and the originals closed, which deregisters them from the
// runtime's epoll: the two pollers never watch the same socket, so the
// runtime is not woken for datagrams it will never read. The descriptors
// stay in blocking mode; every data-plane syscall passes MSG_DONTWAIT, and
// pion's control-plane WriteTo may block briefly like any socket write.
//
// The worker does not block an OS thread in epoll_wait: the epoll descriptor
// itself (readable whenever one of its sockets is) is registered with Go's
// netpoller through an *os.File, and the worker waits for it like any
// network goroutine, then collects the ready sockets with a non-blocking
// epoll_wait. A parked worker costs no thread, and its wake-up goes through
// the scheduler's own netpoll instead of a thread hand-off. Should the
// runtime refuse to poll the descriptor, the worker falls back to a blocking
// epoll_wait.
type epollState struct {
	epfd, evfd int
	epf        *os.File        // owns epfd once the worker runs
	rc         syscall.RawConn // epf's, for netpoller waits
	events     []unix.EpollEvent
	slots      []*Conn
	free       []int32
	cmds       chan command
	exited     chan struct{}
	started    bool
	stopping   bool // a stop command was processed

	raw4, raw6 rawSender // client-to-peer sends across allocations
}

func (w *worker) initEpollState() {
	w.epfd, w.evfd = -1, -1
	w.raw4.fd, w.raw6.fd = -1, -1
	w.cmds = make(chan command, cmdQueueLen)
	w.exited = make(chan struct{})
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
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("dataplane: worker %d: epoll_create1: %w", w.id, err)
	}
	// O_NONBLOCK makes os.NewFile register the epoll descriptor with the
	// netpoller (epoll_wait itself only honours its timeout argument).
	if err = unix.SetNonblock(w.epfd, true); err != nil {
		return fmt.Errorf("dataplane: worker %d: epoll nonblock: %w", w.id, err)
	}
	if w.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("dataplane: worker %d: eventfd: %w", w.id, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.evfd, &ev); err != nil {
		return fmt.Errorf("dataplane: worker %d: epoll_ctl eventfd: %w", w.id, err)
	}
	w.events = make([]unix.EpollEvent, MaxEvents)
	w.epf = os.NewFile(uintptr(w.epfd), "dataplane-epoll")
	if w.rc, err = w.epf.SyscallConn(); err != nil {
		return fmt.Errorf("dataplane: worker %d: epoll raw conn: %w", w.id, err)
	}
	return w.openRawSenders()
}

func (w *worker) closeFDs() {
	w.closeRawSenders()
	if w.epf != nil {
		_ = w.epf.Close()
		w.epf = nil
		w.epfd = -1
	} else if w.epfd >= 0 {
		_ = unix.Close(w.epfd)
		w.epfd = -1
	}
	if w.evfd >= 0 {
		_ = unix.Close(w.evfd)
		w.evfd = -1
	}
}

// run is the per-core loop: wait for ready sockets (level-triggered), read
// each once, flush the batches toward clients, run control commands, and
// repeat while anything may be left; then park in the netpoller.
func (w *worker) run() {
	defer close(w.exited)
	var stop bool
	// serve runs inside the netpoller's wait loop (one RawConn.Read for the
	// worker's whole life): it returns false to be parked until the epoll
	// descriptor is readable, true to leave.
	serve := func(fd uintptr) bool {
		for {
			n, errno := epollPoll(int(fd), w.events)
			switch errno {
			case 0:
			case unix.EINTR:
				continue
			default:
				w.p.log.Error("dataplane: epoll_wait failed, worker stops", slog.Any("error", errno), slog.Int("worker", w.id))
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
			if more {
				continue
			}
			// Every socket read came back short, so each one that gets
			// a datagram from now on wakes the epoll descriptor again:
			// park without one more empty epoll_wait.
			return false
		}
	}
	for !stop {
		err := w.rc.Read(serve)
		switch {
		case err == nil, errors.Is(err, os.ErrClosed):
			return
		default:
			// The runtime cannot poll this descriptor: block instead.
			w.p.log.Warn("dataplane: epoll not pollable, worker blocks in epoll_wait", slog.Any("error", err), slog.Int("worker", w.id))
			w.runBlocking()
			return
		}
	}
}

// runBlocking is the fallback loop with a blocking epoll_wait.
func (w *worker) runBlocking() {
	for !w.stopping {
		n, err := unix.EpollWait(w.epfd, w.events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.p.log.Error("dataplane: epoll_wait failed, worker stops", slog.Any("error", err), slog.Int("worker", w.id))
			return
		}
		w.wake(n)
	}
}

// wake serves the n ready sockets of one epoll_wait. It reports whether
// some socket may hold more datagrams than it read (a full batch), or more
// sockets may be ready than one epoll_wait returned.
func (w *worker) wake(n int) (more bool) {
	w.begin()
	ring := false
	for i := range n {
		ev := &w.events[i]
		if ev.Fd == wakeSlot {
			ring = true
			continue
		}
		c := w.slots[ev.Fd]
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
	more = w.more || n == len(w.events)
	w.more = false
	return more
}

// epollPoll collects ready events without blocking (epoll_pwait with a zero
// timeout, which every Linux architecture has). It is a raw syscall: it
// never blocks, so the scheduler need not be told.
func epollPoll(epfd int, events []unix.EpollEvent) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(r), errno
}

// commands drains the eventfd and the command queue; it reports whether the
// worker must stop.
func (w *worker) commands() bool {
	var buf [8]byte
	_, _ = unix.Read(w.evfd, buf[:])
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
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
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
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
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
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(w.evfd, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return false
	}
	return true
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

// adoptFD takes the descriptor of a UDP socket out of the net package:
// duplicate it, close the original (which removes it from Go's netpoller),
// and put the duplicate in blocking mode.
func adoptFD(pc net.PacketConn) (fd int, local netip.AddrPort, v6 bool, err error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return -1, local, false, fmt.Errorf("dataplane: adopt %T: %w", pc, ErrNotUDP)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: %w", pc.LocalAddr(), err)
	}
	fd = -1
	var derr error
	cerr := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil || derr != nil {
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: dup: %w", pc.LocalAddr(), errors.Join(cerr, derr))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		closeFD(fd)
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: %w", pc.LocalAddr(), ErrNotUDP)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		closeFD(fd)
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: getsockname: %w", pc.LocalAddr(), err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		v6 = true
	default:
		closeFD(fd)
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: %w", pc.LocalAddr(), ErrNotUDP)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		closeFD(fd)
		return -1, local, false, fmt.Errorf("dataplane: adopt %v: set blocking: %w", pc.LocalAddr(), err)
	}
	_ = pc.Close()
	return fd, local, v6, nil
}

func closeFD(fd int) { _ = unix.Close(fd) }

// sendTo sends one datagram: a control-plane one (flags 0: the descriptor
// blocks), or from a worker one the raw socket refused (MSG_DONTWAIT: a
// worker never blocks).
func sendTo(fd int, p []byte, to netip.AddrPort, v6 bool, flags int) error {
	var sa unix.Sockaddr
	a := to.Addr().Unmap()
	switch {
	case v6:
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
	case a.Is4():
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: a.As4()}
	default:
		return fmt.Errorf("dataplane: send to %v from an IPv4 socket: %w", to, errBadAddr)
	}
	for {
		err := unix.Sendto(fd, p, flags, sa)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
