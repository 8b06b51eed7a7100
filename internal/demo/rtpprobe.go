package demo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Media traffic of the demo: each endpoint sends Packets RTP "probes" at a
// steady rate and echoes every probe it receives straight back. So each way
// carries Packets probes plus Packets echoes, both sides learn what the
// other received, and each side measures true round trips from the echoes
// of its own probes.

// payloadSize is 20 ms of G.711 at 8 kHz: the probes look like a phone call.
const payloadSize = 160

// pcmu is the static RTP payload type of G.711 µ-law (RFC 3551).
const pcmu = 0

// Payload kinds, first byte of the RTP payload.
const (
	kindProbe byte = 1
	kindEcho  byte = 2
)

// Payload layout after the kind byte, big endian:
//
//	[1:5]   probe index (for an echo: the index of the probe it answers)
//	[5:13]  the probe's send time, ns since its sender's start (echo: copied)
//	[13:21] this packet's send time, ns since its sender's start
const (
	offIndex    = 1
	offProbeAt  = 5
	offSentAt   = 13
	headerBytes = 21
)

// ProbeConfig says how much traffic an endpoint sends.
type ProbeConfig struct {
	// Packets is the number of probes to send (and to expect from the peer).
	Packets int
	// Interval between probes; 20 ms is 50 packets per second.
	Interval time.Duration
	// Drain bounds the wait for the last echoes and peer probes after the
	// last probe was sent.
	Drain time.Duration
}

// Stats is what one endpoint saw. The JSON form travels from the agent
// process to the orchestrator.
type Stats struct {
	ProbesSent     int `json:"probes_sent"`
	EchoesSent     int `json:"echoes_sent"`
	ProbesReceived int `json:"probes_received"` // distinct probes of the peer
	EchoesReceived int `json:"echoes_received"` // distinct echoes of our probes
	Duplicates     int `json:"duplicates"`
	Invalid        int `json:"invalid"` // datagrams that were not our RTP
	SendErrors     int `json:"send_errors"`
	// Round-trip times of our probes, from their echoes.
	RTTp50 time.Duration `json:"rtt_p50_ns"`
	RTTp99 time.Duration `json:"rtt_p99_ns"`
	RTTMax time.Duration `json:"rtt_max_ns"`
}

// Sent is the number of RTP packets this endpoint sent.
func (s Stats) Sent() int { return s.ProbesSent + s.EchoesSent }

// Received is the number of distinct RTP packets this endpoint received.
func (s Stats) Received() int { return s.ProbesReceived + s.EchoesReceived }

// packetConn is the part of net.Conn the prober needs: both the legacy UDP
// socket and the SDK's MediaConn provide it.
type packetConn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
}

// prober drives the probe/echo exchange over one connection. Its reader
// starts at once (so nothing the peer sends is missed) and keeps echoing
// until the connection is closed, also after Run returned: the peer may
// still be waiting for echoes in flight.
type prober struct {
	conn  packetConn
	cfg   ProbeConfig
	start time.Time

	wmu    sync.Mutex // one writer at a time: sender and echoing reader
	seq    uint16
	ts     uint32
	ssrc   uint32
	packet rtp.Packet

	mu         sync.Mutex
	stats      Stats
	gotProbe   []bool
	gotEcho    []bool
	rtts       []time.Duration
	done       chan struct{} // closed when everything expected arrived
	doneClosed bool
	probesDone bool

	readerDone chan struct{}
	readErr    error
}

func newProber(conn packetConn, cfg ProbeConfig) (*prober, error) {
	if cfg.Packets <= 0 || cfg.Interval <= 0 || cfg.Drain <= 0 {
		return nil, fmt.Errorf("demo: probe config: packets=%d interval=%s drain=%s: all must be positive", cfg.Packets, cfg.Interval, cfg.Drain)
	}
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("demo: probe: random ssrc: %w", err)
	}
	p := &prober{
		conn:       conn,
		cfg:        cfg,
		start:      time.Now(),
		ssrc:       binary.BigEndian.Uint32(r[:4]),
		seq:        binary.BigEndian.Uint16(r[4:]),
		gotProbe:   make([]bool, cfg.Packets),
		gotEcho:    make([]bool, cfg.Packets),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go p.read()
	return p, nil
}

// Run sends the probes at the configured rate, then waits until every echo
// and every peer probe arrived, Drain passed, or ctx ends. It returns the
// stats at that moment.
func (p *prober) Run(ctx context.Context) (Stats, error) {
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for i := range p.cfg.Packets {
		p.send(kindProbe, uint32(i), p.since(), p.since())
		if i == p.cfg.Packets-1 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return p.snapshot(), fmt.Errorf("demo: probe: after %d of %d probes: %w", i+1, p.cfg.Packets, ctx.Err())
		case <-p.readerDone:
			return p.snapshot(), fmt.Errorf("demo: probe: after %d of %d probes: connection closed: %v", i+1, p.cfg.Packets, p.readErr)
		}
	}
	p.mu.Lock()
	p.probesDone = true
	p.checkDoneLocked()
	p.mu.Unlock()

	drain := time.NewTimer(p.cfg.Drain)
	defer drain.Stop()
	select {
	case <-p.done:
	case <-drain.C:
	case <-ctx.Done():
		return p.snapshot(), fmt.Errorf("demo: probe: waiting for echoes: %w", ctx.Err())
	}
	return p.snapshot(), nil
}

// Wait blocks until the reader stopped (the connection was closed).
func (p *prober) Wait() { <-p.readerDone }

func (p *prober) since() int64 { return int64(time.Since(p.start)) }

func (p *prober) send(kind byte, index uint32, probeAt, sentAt int64) {
	var payload [payloadSize]byte
	payload[0] = kind
	binary.BigEndian.PutUint32(payload[offIndex:], index)
	binary.BigEndian.PutUint64(payload[offProbeAt:], uint64(probeAt))
	binary.BigEndian.PutUint64(payload[offSentAt:], uint64(sentAt))

	p.wmu.Lock()
	p.packet = rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    pcmu,
			SequenceNumber: p.seq,
			Timestamp:      p.ts,
			SSRC:           p.ssrc,
		},
		Payload: payload[:],
	}
	p.seq++
	p.ts += payloadSize // 160 samples at 8 kHz per packet
	b, err := p.packet.Marshal()
	if err == nil {
		_, err = p.conn.Write(b)
	}
	p.wmu.Unlock()

	p.mu.Lock()
	switch {
	case err != nil:
		p.stats.SendErrors++
	case kind == kindProbe:
		p.stats.ProbesSent++
	default:
		p.stats.EchoesSent++
	}
	p.mu.Unlock()
}

func (p *prober) read() {
	defer close(p.readerDone)
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			p.readErr = err
			return
		}
		now := p.since()
		if err := pkt.Unmarshal(buf[:n]); err != nil || len(pkt.Payload) < headerBytes {
			p.count(func(s *Stats) { s.Invalid++ })
			continue
		}
		kind := pkt.Payload[0]
		index := binary.BigEndian.Uint32(pkt.Payload[offIndex:])
		probeAt := int64(binary.BigEndian.Uint64(pkt.Payload[offProbeAt:]))
		if int(index) >= p.cfg.Packets || (kind != kindProbe && kind != kindEcho) {
			p.count(func(s *Stats) { s.Invalid++ })
			continue
		}
		if kind == kindProbe {
			// Echo first, count after: when this side reports done, every
			// probe it counted has been answered.
			p.send(kindEcho, index, probeAt, now)
			p.mu.Lock()
			if p.gotProbe[index] {
				p.stats.Duplicates++
			} else {
				p.gotProbe[index] = true
				p.stats.ProbesReceived++
			}
			p.checkDoneLocked()
			p.mu.Unlock()
			continue
		}
		p.mu.Lock()
		if p.gotEcho[index] {
			p.stats.Duplicates++
		} else {
			p.gotEcho[index] = true
			p.stats.EchoesReceived++
			p.rtts = append(p.rtts, time.Duration(now-probeAt))
		}
		p.checkDoneLocked()
		p.mu.Unlock()
	}
}

func (p *prober) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

func (p *prober) checkDoneLocked() {
	if p.doneClosed || !p.probesDone {
		return
	}
	if p.stats.ProbesReceived == p.cfg.Packets && p.stats.EchoesReceived == p.cfg.Packets {
		p.doneClosed = true
		close(p.done)
	}
}

func (p *prober) snapshot() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.RTTp50, s.RTTp99, s.RTTMax = percentile(p.rtts, 0.50), percentile(p.rtts, 0.99), percentile(p.rtts, 1)
	return s
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of d, or 0
// for no samples.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(rank, len(s)-1))]
}
