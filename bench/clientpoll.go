package bench

import (
	"encoding/binary"
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// clientPoller reads every client-leg socket of a load from one goroutine.
// The sockets sit in an epoll set of our own; that epoll descriptor is in
// turn waited on through Go's netpoller (an epoll fd is readable while it has
// ready events), so the poller goroutine parks like any network read. One
// goroutine for all client legs keeps the Go run queue short: with a reader
// per socket, the sender goroutine queued behind hundreds of readers on a
// one-CPU generator and fell tens of milliseconds behind its schedule.
type clientPoller struct {
	p *udpbatch.Poller
	// mu guards byFD and makes "read a socket" and "close a socket"
	// exclusive, so a descriptor number is never read after its close.
	mu   sync.Mutex
	byFD map[int32]*call
}

func newClientPoller() (*clientPoller, error) {
	p, err := udpbatch.NewPoller()
	if err != nil {
		return nil, fmt.Errorf("bench: client poller: %w", err)
	}
	return &clientPoller{p: p, byFD: map[int32]*call{}}, nil
}

// add starts polling c's client socket.
func (p *clientPoller) add(c *call) error {
	fd, err := udpbatch.FD(c.sock)
	if err != nil {
		return fmt.Errorf("bench: call %d: socket fd: %w", c.id, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.p.Add(fd, int32(fd)); err != nil {
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
		_ = p.p.Remove(int(c.fd))
	}
	_ = c.sock.Close()
}

// close ends the poll loop.
func (p *clientPoller) close() { _ = p.p.Close() }

// pollClients is the load's client-leg reader: it waits for the epoll set,
// then drains every ready socket.
func (l *Load) pollClients(p *clientPoller) {
	defer l.wg.Done()
	evs := udpbatch.NewEvents(128)
	rx := newRxMsgs()
	pay := make([]byte, 1500)
	for {
		err := p.p.Wait(func() bool {
			n, err := p.p.Poll(evs)
			if err != nil {
				return true // let Wait report the closed set
			}
			if n == 0 {
				return false // park until the epoll set is readable
			}
			for i := range n {
				l.drainClient(p, evs.Token(i), rx, pay)
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
func (l *Load) drainClient(p *clientPoller, fd int32, rx *udpbatch.Msgs, pay []byte) (read bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.byFD[fd]
	if c == nil {
		return false
	}
	if n, _ := udpbatch.Recv(int(fd), rx, 0, 1); n != 1 {
		return false // nothing after all
	}
	m := &rx.M[0]
	b, oob, from := m.Buf[:m.N], m.OOB[:m.NOOB], m.Addr
	arrived, ok := rxTime(oob)
	if !ok {
		arrived = wallNow()
	}
	if num, m, ok := channeldata.Parse(b); ok && m >= 0 && uint32(num) == c.sock.channel.Load() {
		// Steady state: ChannelData on the channel pion bound, so the
		// payload is taken straight out of the message (anything else,
		// including another channel number, goes to pion).
		c.chanIn.Add(1)
		l.accept(&c.down, c.ssrc(false), b[channeldata.HeaderLen:channeldata.HeaderLen+m], arrived, &l.hDown, &l.warmDown)
		return true
	}
	src := c.serverUDP // pion ignores the source of ChannelData
	if !isChannelData(b) {
		src = net.UDPAddrFromAddrPort(from)
	}
	l.clientDatagram(c, b, src, arrived, pay)
	return true
}

// newRxMsgs is one reader's receive batch: a 1500-byte buffer and a
// control buffer (for the kernel receive time) per slot, allocated once, so
// the generator's receive path allocates nothing.
func newRxMsgs() *udpbatch.Msgs { return udpbatch.NewMsgs(peerBatch, 1500, oobSize) }

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
