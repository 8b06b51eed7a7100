package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// LoadConfig describes the calls a [Load] places on one TURN server.
type LoadConfig struct {
	// Server4 and Server6 are the relay's UDP listening addresses that
	// IPv4 and IPv6 client legs use. A path whose client family has no
	// server address is an error.
	Server4, Server6 netip.AddrPort
	// Username, Password and Realm are long-term credentials.
	Username, Password, Realm string
	// Calls is the number of calls.
	Calls int
	// Paths are the call shapes, used round-robin (call i gets
	// Paths[i%len(Paths)]). Empty means [PathV6toV4] and [PathV4toV6].
	Paths []Path
	// PeerIP4 and PeerIP6 are the peer legs' addresses, and ClientIP4 and
	// ClientIP6 the client legs'. Each defaults to loopback when the relay's
	// address of that family is loopback, else to the source address the
	// routing table picks toward it (a relay in another namespace or host).
	PeerIP4, PeerIP6     netip.Addr
	ClientIP4, ClientIP6 netip.Addr
	// SetupConcurrency is how many calls are set up at once (default 16).
	SetupConcurrency int
	// SetupTimeout bounds the whole ramp-up (default 30 s + 20 ms per call).
	SetupTimeout time.Duration
	// Senders is the number of sender goroutines sharing the schedule
	// (default GOMAXPROCS at Run time: more senders than Ps only take turns
	// on the same P, and a sender that is behind schedule does not yield, so
	// the other one falls behind too).
	Senders int
	// Drain is how long receivers may take to see the last packets after the
	// senders stop (default 300 ms).
	Drain time.Duration
	// Spin makes one goroutine send and receive everything during Run,
	// polling the sockets without ever sleeping (Senders is then 1). It is
	// for a generator with a CPU of its own (the bench pins it): a sender
	// sleeping on timers woke late and caught up in bursts, which then
	// showed as relay latency. Run then reports how busy the loop was
	// instead of the CPU it burned (Traffic.GeneratorBusy).
	Spin bool
}

func (cfg *LoadConfig) setDefaults() error {
	if cfg.Calls <= 0 {
		return fmt.Errorf("bench: load: calls: %d, want > 0", cfg.Calls)
	}
	if len(cfg.Paths) == 0 {
		cfg.Paths = []Path{PathV6toV4, PathV4toV6}
	}
	for _, p := range cfg.Paths {
		if (p.Client == netaddr.IPv4 && !cfg.Server4.IsValid()) || (p.Client == netaddr.IPv6 && !cfg.Server6.IsValid()) {
			return fmt.Errorf("bench: load: paths: %s needs a %s server address", p, p.Client)
		}
	}
	for _, a := range []struct {
		ip     *netip.Addr
		family netaddr.Family
		server netip.AddrPort
	}{
		{&cfg.PeerIP4, netaddr.IPv4, cfg.Server4}, {&cfg.ClientIP4, netaddr.IPv4, cfg.Server4},
		{&cfg.PeerIP6, netaddr.IPv6, cfg.Server6}, {&cfg.ClientIP6, netaddr.IPv6, cfg.Server6},
	} {
		if a.ip.IsValid() {
			continue
		}
		ip, err := sourceFor(a.family, a.server)
		if err != nil {
			return err
		}
		*a.ip = ip
	}
	if cfg.SetupConcurrency <= 0 {
		cfg.SetupConcurrency = 16
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = 30*time.Second + time.Duration(cfg.Calls)*20*time.Millisecond
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 300 * time.Millisecond
	}
	return nil
}

// Load is a set of established calls on one relay.
type Load struct {
	cfg   LoadConfig
	peers map[netaddr.Family]*peerSock
	// poller reads every client-leg socket.
	poller *clientPoller
	base   time.Time
	calls  []*call
	setup  Setup
	wg     sync.WaitGroup // receivers
	hUp    Histogram
	hDown  Histogram
	// misrouted counts bench packets that arrived at the wrong call.
	misrouted atomic.Uint64
	// warmUp and warmDown count warm-up packets received on the peer and
	// client legs (not part of any measurement).
	warmUp, warmDown atomic.Uint64
	// clientInErrors counts datagrams pion's client rejected.
	clientInErrors atomic.Uint64
	// spunRx counts datagrams a spinning Run read itself (the rest went to
	// the receiver goroutines).
	spunRx atomic.Uint64
	// noRxStamps counts calls whose sockets refused SO_TIMESTAMPNS.
	noRxStamps atomic.Uint64
	ran        atomic.Bool
	closeOnce  sync.Once
}

// Setup describes the ramp-up: how long it took to set up every call
// (Allocate with its 401 round trip, CreatePermission, ChannelBind and a
// ChannelData round trip both ways).
type Setup struct {
	Calls       int           `json:"calls"`
	Duration    time.Duration `json:"duration_ns"`
	RatePerSec  float64       `json:"rate_per_s"`
	Concurrency int           `json:"concurrency"`
}

// clock is the schedule's monotonic clock.
func (l *Load) clock() time.Duration { return time.Since(l.base) }

// NewLoad sets up cfg.Calls calls and starts their receivers. On error every
// call already set up is closed.
func NewLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	l := &Load{cfg: cfg, base: time.Now(), peers: map[netaddr.Family]*peerSock{}}
	poller, err := newClientPoller()
	if err != nil {
		return nil, err
	}
	l.poller = poller
	l.wg.Add(1)
	go l.pollClients(poller)
	for _, p := range cfg.Paths {
		if l.peers[p.Relay] != nil {
			continue
		}
		ip := cfg.PeerIP4
		if p.Relay == netaddr.IPv6 {
			ip = cfg.PeerIP6
		}
		ps, err := newPeerSock(p.Relay, ip)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.peers[p.Relay] = ps
	}
	l.calls = make([]*call, cfg.Calls)
	for i := range l.calls {
		path := cfg.Paths[i%len(cfg.Paths)]
		l.calls[i] = &call{id: i, path: path, peer: l.peers[path.Relay]}
	}
	for _, ps := range l.peers {
		l.wg.Add(1)
		go l.receivePeer(ps)
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	start := time.Now()
	next := atomic.Int64{}
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range min(cfg.SetupConcurrency, cfg.Calls) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(l.calls) || sctx.Err() != nil {
					return
				}
				if err := l.open(sctx, l.calls[i]); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && sctx.Err() != nil {
		firstErr = fmt.Errorf("bench: setting up %d calls: %w", cfg.Calls, sctx.Err())
	}
	if firstErr != nil {
		l.Close()
		return nil, firstErr
	}
	d := time.Since(start)
	l.setup = Setup{Calls: cfg.Calls, Duration: d, RatePerSec: float64(cfg.Calls) / d.Seconds(), Concurrency: cfg.SetupConcurrency}
	return l, nil
}

// open dials one call, adds its client leg to the poller, sets up the
// allocation and warms it up.
func (l *Load) open(ctx context.Context, c *call) error {
	if err := c.dial(ctx, &l.cfg); err != nil {
		c.close()
		return err
	}
	if err := l.poller.add(c); err != nil {
		c.close()
		return err
	}
	if err := c.allocate(ctx); err != nil {
		return err
	}
	if !c.rxStamps {
		l.noRxStamps.Add(1)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.warmUp(wctx)
}

func (l *Load) accept(s *stream, want uint32, b []byte, now time.Duration, h *Histogram, warm *atomic.Uint64) {
	st, err := parsePacket(b)
	if err != nil {
		l.misrouted.Add(1)
		return
	}
	switch st.ssrc {
	case want:
		s.record(st, now, h)
	case want | warmupSSRCBit:
		warm.Add(1)
	default:
		l.misrouted.Add(1)
	}
}

// Setup returns the ramp-up figures.
func (l *Load) Setup() Setup { return l.setup }

// Calls returns the number of established calls.
func (l *Load) Calls() int { return len(l.calls) }

// ErrAlreadyRan reports a second Run on the same Load.
var ErrAlreadyRan = errors.New("bench: load already ran")

// sendEvent is one stream's slot in the 20 ms schedule.
type sendEvent struct {
	phase time.Duration
	c     *call
	up    bool
}

// Run sends paced traffic on every call for d, waits up to the drain time
// for the last packets and returns what the receivers saw. A Load runs once.
func (l *Load) Run(ctx context.Context, d time.Duration) (Traffic, error) {
	if !l.ran.CompareAndSwap(false, true) {
		return Traffic{}, ErrAlreadyRan
	}
	if d <= 0 {
		return Traffic{}, fmt.Errorf("bench: run: duration %v, want > 0", d)
	}
	// Spread 2N send events evenly over one packet interval: call i's
	// client leg at i*P/N, its peer leg half a slot later.
	n := len(l.calls)
	events := make([]sendEvent, 0, 2*n)
	slot := PacketInterval / time.Duration(2*n)
	for i, c := range l.calls {
		events = append(events,
			sendEvent{phase: time.Duration(2*i) * slot, c: c, up: true},
			sendEvent{phase: time.Duration(2*i+1) * slot, c: c, up: false})
	}
	sort.SliceStable(events, func(a, b int) bool { return events[a].phase < events[b].phase })
	senders := l.cfg.Senders
	if senders <= 0 {
		senders = runtime.GOMAXPROCS(0)
	}
	senders = max(1, min(senders, len(events)))
	var spin *spinner
	if l.cfg.Spin {
		senders = 1
		spin = l.newSpinner()
	}
	parts := make([][]sendEvent, senders)
	for i, e := range events {
		parts[i%senders] = append(parts[i%senders], e)
	}
	cpu0, _ := readSelfCPU()
	wall0 := time.Now()
	start := l.clock() + 2*time.Millisecond
	end := start + d
	var late Histogram
	var wg sync.WaitGroup
	if spin != nil {
		l.send(ctx, parts[0], start, end, &late, spin)
	} else {
		for _, part := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.send(ctx, part, start, end, &late, l.newSleeper())
			}()
		}
		wg.Wait()
	}
	// Drain: bounded wait for in-flight packets.
	var sent uint64
	for _, c := range l.calls {
		sent += c.up.sent + c.down.sent
	}
	drained := func() bool { return l.hUp.Count()+l.hDown.Count() >= sent }
	if spin != nil {
		spin.drain(ctx, l.clock()+l.cfg.Drain, drained)
	} else {
		deadline := time.Now().Add(l.cfg.Drain)
		tick := time.NewTicker(5 * time.Millisecond)
		for time.Now().Before(deadline) && !drained() {
			select {
			case <-ctx.Done():
				deadline = time.Now()
			case <-tick.C:
			}
		}
		tick.Stop()
	}
	cpu1, _ := readSelfCPU()
	t := l.traffic(d)
	t.SendLateP99 = late.Quantile(0.99)
	t.SendLateMax = late.Max()
	if wall := time.Since(wall0); wall > 0 {
		t.GeneratorCPU = (cpu1 - cpu0).Seconds() / wall.Seconds()
		t.GeneratorBusy = t.GeneratorCPU
		if spin != nil {
			t.GeneratorSpin = true
			t.GeneratorBusy = max(0, 1-spin.idle.Seconds()/wall.Seconds())
		}
	}
	return t, ctx.Err()
}

// maxLate is how far behind schedule a packet may go out; later ones are
// skipped and counted (Traffic.Skipped), and the step is marked
// generator-bound.
const maxLate = PacketInterval

// sendSlack is how early an event may go out: events due within it are sent
// at once instead of sleeping for each, which bounds timer wake-ups to about
// 4000 a second per sender whatever the call count, at the cost of pacing
// with 250 µs granularity.
const sendSlack = 250 * time.Microsecond

// pacer is how a sender waits for its next event: a timer ([sleeper]) or
// polling the sockets meanwhile ([spinner]).
type pacer interface {
	// waitUntil returns when the load's clock reaches due, false if ctx
	// ended first.
	waitUntil(ctx context.Context, due time.Duration) bool
}

// sleeper is the default pacer: the sender sleeps on a timer and the
// receiver goroutines are woken by the netpoller.
type sleeper struct {
	l     *Load
	timer *time.Timer
}

func (l *Load) newSleeper() *sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &sleeper{l: l, timer: t}
}

func (s *sleeper) waitUntil(ctx context.Context, due time.Duration) bool {
	s.timer.Reset(due - s.l.clock())
	select {
	case <-ctx.Done():
		s.timer.Stop()
		return false
	case <-s.timer.C:
		return true
	}
}

// send is one sender goroutine: it walks its share of the schedule once per
// packet interval, waiting with pace until each event is due.
func (l *Load) send(ctx context.Context, evs []sendEvent, start, end time.Duration, late *Histogram, pace pacer) {
	buf := make([]byte, channeldata.HeaderLen+PacketSize)
	outs := map[*peerSock]*peerOut{}
	for _, p := range l.peers {
		outs[p] = newPeerOut(p)
	}
	flush := func() {
		for _, o := range outs {
			if len(o.ms) > 0 {
				o.flush()
			}
		}
	}
	defer flush()
	for cycle := time.Duration(0); ; cycle++ {
		base := start + cycle*PacketInterval
		for _, e := range evs {
			due := base + e.phase
			if due >= end {
				return
			}
			now := l.clock()
			if due-now > sendSlack {
				flush() // what is due goes out before waiting
				if !pace.waitUntil(ctx, due) {
					return
				}
				now = l.clock()
			}
			late.Record(now - due)
			c := e.c
			if now-due > maxLate {
				// A packet more than a period overdue is skipped, not sent
				// in a catch-up burst: a stalled generator must not turn
				// into a burst that overflows the relay's buffers.
				if e.up {
					c.up.skipped++
				} else {
					c.down.skipped++
				}
				continue
			}
			if e.up {
				l.sendUp(c, buf)
				continue
			}
			outs[c.peer].add(c, c.downSeq)
			c.downSeq++
		}
	}
}

// sendUp sends one client->peer packet. Until pion has bound the channel it
// goes through pion's relayed conn (a Send indication, then ChannelData);
// from then on the sender writes the 4-byte ChannelData header itself and
// sends on the client socket: the datagram on the wire is the one pion would
// write, without pion's per-packet lookups and locks, so the generator stays
// cheaper per packet than the relays it loads. pion still refreshes the
// allocation, permission and binding on its own timers.
func (l *Load) sendUp(c *call, buf []byte) {
	num := c.sock.channel.Load()
	hdr := channeldata.HeaderLen
	n, err := marshalPacket(buf[hdr:], c.ssrc(true), c.upSeq, wallNow())
	c.upSeq++
	switch {
	case err != nil:
	case num == 0:
		_, err = c.relayConn.WriteTo(buf[hdr:hdr+n], c.peerAddr)
	default:
		channeldata.PutHeader(buf, uint16(num), n)
		if err = c.sendRaw(buf[:hdr+n]); err == nil {
			c.sock.chanOut.Add(1)
		}
	}
	if err != nil {
		c.up.sendErrors++
		return
	}
	c.up.sent++
}

// sendRaw sends b to the relay on the client socket with one raw,
// non-blocking sendto (the net package's WriteTo costs a fifth more per
// packet in fd locking and poller bookkeeping). A full socket buffer is a
// send error, not a wait: at 50 packets/s a call's socket never fills.
func (c *call) sendRaw(b []byte) error { return udpbatch.SendTo(int(c.fd), b, &c.serverSA) }

// Close tears every call down (allocations are released with a Refresh of
// lifetime 0) and waits for the receivers to stop.
func (l *Load) Close() {
	l.closeOnce.Do(func() {
		// pion's Close waits for its refresh timers to stop; close calls in
		// parallel so a large load tears down quickly.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(16, len(l.calls)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(l.calls) {
						return
					}
					l.calls[i].close()
				}
			}()
		}
		wg.Wait()
		for _, p := range l.peers {
			_ = p.conn.Close()
		}
		if l.poller != nil {
			l.poller.close()
		}
		l.wg.Wait()
	})
}

// counts is a snapshot of what the client legs carried, by kind.
type counts struct{ chanOut, stunOut, chanIn, stunIn, warmDown uint64 }

func (l *Load) setupCounts() counts {
	c := counts{warmDown: l.warmDown.Load()}
	for _, cl := range l.calls {
		c.chanOut += cl.sock.chanOut.Load()
		c.stunOut += cl.sock.stunOut.Load()
		c.chanIn += cl.chanIn.Load()
		c.stunIn += cl.stunIn.Load()
	}
	return c
}
