//go:build linux

package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is a private, level-triggered epoll set whose own descriptor is
// registered with Go's netpoller (an epoll descriptor is readable while it
// has ready events). A goroutine waiting in Wait parks like any network
// read: it costs no OS thread, and its wake-up goes through the scheduler's
// own netpoll instead of a thread hand-off. One goroutine then serves many
// sockets per wake-up, where the netpoller would wake one goroutine per
// socket. Poll collects ready sockets without blocking; Wake rings the set
// from another goroutine (Token WakeToken).
type Poller struct {
	epfd, evfd int
	f          *os.File        // owns epfd
	rc         syscall.RawConn // f's, for netpoller waits
}

// Events is one goroutine's buffer of ready sockets for Poll.
type Events struct{ ev []unix.EpollEvent }

// NewEvents returns room for n ready sockets per Poll.
func NewEvents(n int) *Events { return &Events{ev: make([]unix.EpollEvent, max(n, 1))} }

// Token returns the token of the i-th ready socket of the last Poll.
func (e *Events) Token(i int) int32 { return e.ev[i].Fd }

// Full reports whether a Poll that returned n filled e (more sockets may be
// ready than it returned).
func (e *Events) Full(n int) bool { return n == len(e.ev) }

// NewPoller opens an epoll set.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("udpbatch: epoll_create1: %w", err)
	}
	p := &Poller{epfd: epfd, evfd: -1}
	fail := func(what string, err error) (*Poller, error) {
		_ = p.Close()
		return nil, fmt.Errorf("udpbatch: %s: %w", what, err)
	}
	// O_NONBLOCK makes os.NewFile register the epoll descriptor with the
	// netpoller (epoll_wait itself only honours its timeout argument).
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fail("epoll nonblock", err)
	}
	p.f = os.NewFile(uintptr(epfd), "udpbatch-epoll")
	if p.rc, err = p.f.SyscallConn(); err != nil {
		return fail("epoll raw conn", err)
	}
	if p.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	if err := p.Add(p.evfd, WakeToken); err != nil {
		return fail("epoll_ctl eventfd", err)
	}
	return p, nil
}

// Add watches fd for readability; Poll reports it as token.
func (p *Poller) Add(fd int, token int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: token}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// Remove stops watching fd.
func (p *Poller) Remove(fd int) error { return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil) }

// Poll collects ready sockets into e without blocking (epoll_pwait with a
// zero timeout, which every Linux architecture has) and returns how many;
// e.Token names them. It is a raw syscall: it never blocks, so the
// scheduler need not be told.
func (p *Poller) Poll(e *Events) (int, error) {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd),
			uintptr(unsafe.Pointer(&e.ev[0])), uintptr(len(e.ev)), 0, 0, 0)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
		default:
			return 0, errno
		}
	}
}

// Wait parks the calling goroutine in the netpoller until the set is
// readable, then calls serve, again and again, until serve reports true.
// serve should Poll and serve what is ready; it returns false to be parked
// again. Wait returns nil once serve reports true, os.ErrClosed after
// Close, or ErrNotPollable when the runtime cannot poll the descriptor (the
// caller then falls back to WaitBlocking).
func (p *Poller) Wait(serve func() (done bool)) error {
	err := p.rc.Read(func(uintptr) bool { return serve() })
	switch {
	case err == nil, errors.Is(err, os.ErrClosed):
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotPollable, err)
}

// WaitBlocking blocks the calling thread in epoll_wait until a socket is
// ready and returns how many are (e.Token names them): the fallback for
// Wait.
func (p *Poller) WaitBlocking(e *Events) (int, error) {
	for {
		n, err := unix.EpollWait(p.epfd, e.ev, -1)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// Wake makes the set readable (token WakeToken) until Drain: the way
// another goroutine hands the waiter work.
func (p *Poller) Wake() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(p.evfd, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return err
	}
	return nil
}

// Drain resets the wake-up that Wake rang.
func (p *Poller) Drain() {
	var buf [8]byte
	_, _ = unix.Read(p.evfd, buf[:])
}

// Close closes the set; a goroutine in Wait returns os.ErrClosed.
func (p *Poller) Close() error {
	var err error
	if p.f != nil {
		err = p.f.Close()
		p.f = nil
	} else if p.epfd >= 0 {
		err = unix.Close(p.epfd)
	}
	p.epfd = -1
	if p.evfd >= 0 {
		_ = unix.Close(p.evfd)
		p.evfd = -1
	}
	return err
}
