package demo

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpPair returns two loopback UDP sockets that send to each other.
func udpPair(t *testing.T) (*plainConn, *plainConn) {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	ua, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	ub, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	a := &plainConn{udp: ua, remote: ub.LocalAddr().(*net.UDPAddr).AddrPort()}
	b := &plainConn{udp: ub, remote: ua.LocalAddr().(*net.UDPAddr).AddrPort()}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// lossyConn drops every dropEvery-th datagram it is asked to write.
type lossyConn struct {
	*plainConn
	dropEvery int64
	writes    atomic.Int64
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if c.dropEvery > 0 && c.writes.Add(1)%c.dropEvery == 0 {
		return len(p), nil
	}
	return c.plainConn.Write(p)
}

// exchangeOver runs two probers against each other; closeAll ends their
// readers.
func exchangeOver(t *testing.T, a, b packetConn, closeAll func(), cfg ProbeConfig) (Stats, Stats) {
	t.Helper()
	pa, err := newProber(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := newProber(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sa, sb Stats
	var ea, eb error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sa, ea = pa.Run(ctx) }()
	go func() { defer wg.Done(); sb, eb = pb.Run(ctx) }()
	wg.Wait()
	closeAll()
	pa.Wait()
	pb.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("run: %v / %v", ea, eb)
	}
	return sa, sb
}

func TestProbeExchangeCountsEverything(t *testing.T) {
	a, b := udpPair(t)
	cfg := ProbeConfig{Packets: 200, Interval: 200 * time.Microsecond, Drain: 2 * time.Second}
	sa, sb := exchangeOver(t, a, b, func() { a.Close(); b.Close() }, cfg)
	for name, s := range map[string]Stats{"a": sa, "b": sb} {
		if s.ProbesSent != 200 || s.EchoesSent != 200 || s.ProbesReceived != 200 || s.EchoesReceived != 200 {
			t.Errorf("%s: %+v, want 200 of each", name, s)
		}
		if s.RTTp50 <= 0 || s.RTTp99 < s.RTTp50 || s.RTTMax < s.RTTp99 {
			t.Errorf("%s: RTT p50 %s p99 %s max %s", name, s.RTTp50, s.RTTp99, s.RTTMax)
		}
		if s.Invalid != 0 || s.Duplicates != 0 {
			t.Errorf("%s: invalid %d duplicates %d", name, s.Invalid, s.Duplicates)
		}
	}
}

func TestProbeExchangeSeesLoss(t *testing.T) {
	a, b := udpPair(t)
	la := &lossyConn{plainConn: a, dropEvery: 10}
	cfg := ProbeConfig{Packets: 100, Interval: 200 * time.Microsecond, Drain: 300 * time.Millisecond}
	sa, sb := exchangeOver(t, la, b, func() { a.Close(); b.Close() }, cfg)
	// a drops every 10th of its writes (probes and echoes mixed), so b
	// misses some probes and a misses the echoes of probes b got from it.
	lost := int(la.writes.Load() / 10)
	if got := sa.Sent() - sb.Received(); got != lost {
		t.Errorf("a sent %d, b received %d: %d lost, want %d", sa.Sent(), sb.Received(), got, lost)
	}
	if sb.ProbesReceived == cfg.Packets || sb.EchoesReceived+sb.ProbesReceived == 2*cfg.Packets {
		t.Errorf("b saw no loss: %+v", sb)
	}
	if sa.EchoesReceived == cfg.Packets {
		t.Errorf("a got every echo although its probes were dropped: %+v", sa)
	}
}

func TestProbeRejectsForeignDatagrams(t *testing.T) {
	a, b := net.Pipe()
	p, err := newProber(a, ProbeConfig{Packets: 1, Interval: time.Millisecond, Drain: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{
		[]byte("not rtp"),
		{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, // RTP header, empty payload
		append([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 30)...), // kind 0
	} {
		if _, err := b.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	p.Wait()
	if s := p.snapshot(); s.Invalid != 3 || s.Received() != 0 {
		t.Errorf("after 3 foreign datagrams: %+v", s)
	}
	a.Close()
}

func TestProbeConfigMustBePositive(t *testing.T) {
	for _, cfg := range []ProbeConfig{
		{Packets: 0, Interval: time.Millisecond, Drain: time.Second},
		{Packets: 1, Interval: 0, Drain: time.Second},
		{Packets: 1, Interval: time.Millisecond, Drain: 0},
	} {
		if _, err := newProber(nil, cfg); err == nil {
			t.Errorf("newProber(%+v) accepted", cfg)
		}
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := percentile(d, tc.q); got != tc.want {
			t.Errorf("percentile(1..100ms, %v) = %s, want %s", tc.q, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %s", got)
	}
}
