//go:build linux

package relay

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reserveListener keeps /metrics and /readyz reachable while the process
// is out of descriptors (EMFILE): exactly when an operator needs to see it.
// It holds one spare descriptor (/dev/null); an accept that fails with
// EMFILE waits for a pending connection, closes the spare and accepts again
// into the freed slot, and the spare is taken back once that connection
// closes. One scrape at a time is served that way while descriptors stay
// exhausted (the reserve-descriptor trick of libev's and nginx's accept
// paths). net/http retries other accept errors with its own back-off.
type reserveListener struct {
	net.Listener
	mu    sync.Mutex
	spare int // -1 while lent out, -2 once closed
}

func newReserveListener(l net.Listener) *reserveListener {
	r := &reserveListener{Listener: l, spare: -1}
	r.refill()
	return r
}

// refill takes the spare descriptor back if it is lent out.
func (r *reserveListener) refill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spare != -1 {
		return // held, or the listener is closed
	}
	if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		r.spare = fd
	}
}

// lend closes the spare so the next accept gets its slot; false when it
// is already lent out.
func (r *reserveListener) lend() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spare < 0 {
		return false
	}
	_ = unix.Close(r.spare)
	r.spare = -1
	return true
}

// Accept implements net.Listener.
func (r *reserveListener) Accept() (net.Conn, error) {
	r.refill()
	c, err := r.Listener.Accept()
	if err != nil && (errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) && r.waitPending() && r.lend() {
		// The spare's slot is free from here to the accept: a few
		// microseconds in which another goroutine could take it (then this
		// accept fails again and net/http backs off).
		c, err = r.Listener.Accept()
	}
	if err != nil {
		return nil, err
	}
	return &reserveConn{Conn: c, l: r}, nil
}

// waitPending blocks until a connection is waiting to be accepted, so the
// spare is lent only for a scrape that is there (accept fails with EMFILE
// at once, pending connection or not); false once the listener is closed.
// A listener's RawConn offers no Read (no netpoller wait), so it polls the
// descriptor in slices of pendingPoll, which also bounds how long a Close
// waits for it.
func (r *reserveListener) waitPending() bool {
	sc, ok := r.Listener.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	for !r.isClosed() {
		n := 0
		cerr := rc.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}} //nolint:gosec // a descriptor
			n, _ = unix.Poll(pfd, pendingPoll)
		})
		if cerr != nil {
			return false
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// pendingPoll is one slice of waitPending's wait, in milliseconds.
const pendingPoll = 200

func (r *reserveListener) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spare == -2
}

// Close closes the listener and the spare descriptor.
func (r *reserveListener) Close() error {
	err := r.Listener.Close()
	r.mu.Lock()
	if r.spare >= 0 {
		_ = unix.Close(r.spare)
	}
	r.spare = -2
	r.mu.Unlock()
	return err
}

// reserveConn gives the spare back to its listener when it closes.
type reserveConn struct {
	net.Conn
	l    *reserveListener
	once sync.Once
}

// Close closes the connection and takes the listener's spare back.
func (c *reserveConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.refill)
	return err
}
