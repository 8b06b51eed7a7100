package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// clientPoller reads every client-leg socket of a load from one goroutine.
// The sockets sit in an epoll set of our own; that epoll descriptor is in
// turn waited on through Go's netpoller (an epoll fd is readable while it has
// ready events), so the poller goroutine parks like any network read. One
// goroutine for all client legs keeps the Go run queue short: with a reader
// per socket, the sender goroutine queued behind hundreds of readers on a
// one-CPU generator and fell tens of milliseconds behind its schedule.
type clientPoller struct {
	epfd int
	file *os.File
	rc   syscall.RawConn
	// mu guards byFD and makes "read a socket" and "close a socket"
	// exclusive, so a descriptor number is never read after its close.
	mu   sync.Mutex
	byFD map[int32]*call
}

func newClientPoller() (*clientPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("bench: epoll nonblock: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "bench-client-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bench: epoll raw conn: %w", err)
	}
	return &clientPoller{epfd: epfd, file: f, rc: rc, byFD: map[int32]*call{}}, nil
}

// add starts polling c's client socket.
func (p *clientPoller) add(c *call) error {
	raw, err := c.sock.SyscallConn()
	if err != nil {
		return fmt.Errorf("bench: call %d: raw socket: %w", c.id, err)
	}
	var fd int
	if err := raw.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return fmt.Errorf("bench: call %d: socket fd: %w", c.id, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("bench: call %d: epoll add: %w", c.id, err)
	}
	c.fd = int32(fd)
	c.poller = p
	p.byFD[c.fd] = c
	return nil
}

// closeSock stops polling c's socket and closes it.
func (p *clientPoller) closeSock(c *call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byFD[c.fd] == c {
		delete(p.byFD, c.fd)
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	}
	_ = c.sock.Close()
}

// close ends the poll loop.
func (p *clientPoller) close() { _ = p.file.Close() }

// pollClients is the load's client-leg reader: it waits for the epoll set,
// then drains every ready socket.
func (l *Load) pollClients(p *clientPoller) {
	defer l.wg.Done()
	evs := make([]unix.EpollEvent, 128)
	rx := newRxBatch()
	pay := make([]byte, 1500)
	for {
		err := p.rc.Read(func(fd uintptr) bool {
			n, err := unix.EpollWait(int(fd), evs, 0)
			if err == unix.EINTR {
				return true
			}
			if err != nil {
				return true // let Read report the closed file
			}
			if n == 0 {
				return false // park until the epoll set is readable
			}
			for _, ev := range evs[:n] {
				l.drainClient(p, ev.Fd, rx, pay)
			}
			return true
		})
		if err != nil {
			return // closed
		}
		// Under load there is always more to read; yield after each round
		// so the sender's timer fires on time on a one-CPU generator (a
		// goroutine that never blocks keeps the P until the runtime
		// preempts it, 10 ms later).
		runtime.Gosched()
	}
}

// drainClient reads one datagram from a ready client socket. The epoll set
// is level-triggered, so a socket with more queued is reported again by the
// next epoll_wait: reading until EAGAIN would cost one more recvmsg per
// wake-up on every socket, and at 50 packets/s a call rarely has two queued.
func (l *Load) drainClient(p *clientPoller, fd int32, rx *rxBatch, pay []byte) (read bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.byFD[fd]
	if c == nil {
		return false
	}
	if n, _ := rx.read(int(fd), 1); n != 1 {
		return false // EAGAIN: nothing after all
	}
	b, oob, from := rx.datagram(0)
	arrived, ok := rxTime(oob)
	if !ok {
		arrived = wallNow()
	}
	if num, m, ok := dataplane.ParseChannelData(b); ok && m >= 0 && uint32(num) == c.sock.channel.Load() {
		// Steady state: ChannelData on the channel pion bound, so the
		// payload is taken straight out of the message (anything else,
		// including another channel number, goes to pion).
		c.chanIn.Add(1)
		l.accept(&c.down, c.ssrc(false), b[dataplane.ChannelDataHeaderLen:dataplane.ChannelDataHeaderLen+m], arrived, &l.hDown, &l.warmDown)
		return true
	}
	src := c.serverUDP // pion ignores the source of ChannelData
	if !isChannelData(b) {
		src = net.UDPAddrFromAddrPort(from)
	}
	l.clientDatagram(c, b, src, arrived, pay)
	return true
}

// dataIndication is the STUN message type of a TURN Data indication.
var dataIndication = stun.NewType(stun.MethodData, stun.ClassIndication).Value()

// clientDatagram hands one datagram to pion (responses complete
// transactions; ChannelData and Data indications are decoded and queued on
// the relayed conn) and, for data, takes the payload straight back from the
// relayed conn, which cannot block because pion queued it synchronously.
// pion's own Listen loop is not used.
func (l *Load) clientDatagram(c *call, b []byte, from *net.UDPAddr, arrived time.Duration, pay []byte) {
	isData := isChannelData(b)
	if isData {
		c.chanIn.Add(1)
	} else {
		c.stunIn.Add(1)
		isData = stun.IsMessage(b) && binary.BigEndian.Uint16(b[0:2]) == dataIndication
	}
	if _, err := c.client.HandleInbound(b, from); err != nil {
		l.clientInErrors.Add(1)
		return
	}
	rc := c.relayed.Load()
	if !isData || rc == nil {
		return
	}
	m, _, err := (*rc).ReadFrom(pay)
	if err != nil {
		return // closed
	}
	l.accept(&c.down, c.ssrc(false), pay[:m], arrived, &l.hDown, &l.warmDown)
}
