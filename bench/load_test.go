package bench

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// runTinyLoad places calls on srv for d and checks the exact packet counts:
// every call sends 50 packets a second each way, nothing may be lost, and
// steady-state client-leg traffic must be ChannelData.
func runTinyLoad(t *testing.T, v4, v6 netip.AddrPort, user, pass, realm string, calls int, d time.Duration) Traffic {
	t.Helper()
	tr, _ := runTinyLoadConfig(t, LoadConfig{
		Server4: v4, Server6: v6,
		Username: user, Password: pass, Realm: realm,
		Calls: calls,
	}, d)
	return tr
}

// runTinyLoadConfig is runTinyLoad for any LoadConfig; it also returns the
// closed load.
func runTinyLoadConfig(t *testing.T, cfg LoadConfig, d time.Duration) (Traffic, *Load) {
	t.Helper()
	calls := cfg.Calls
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	load, err := NewLoad(ctx, cfg)
	if err != nil {
		t.Fatalf("NewLoad: %v", err)
	}
	t.Cleanup(load.Close)
	before := load.setupCounts()
	tr, err := load.Run(ctx, d)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Each stream sends once per interval from start to end; the schedule
	// phases lie inside the first interval, so each stream sends exactly
	// d/PacketInterval packets.
	perStream := uint64(d / PacketInterval)
	want := uint64(calls) * perStream
	for name, ds := range map[string]DirStats{"up": tr.Up, "down": tr.Down} {
		// A stalled test machine may make the generator skip packets
		// that are over 20 ms late; those are not sent, and counted.
		if ds.Sent+ds.Skipped != want {
			t.Errorf("%s: sent %d + skipped %d packets, want %d (%d calls x %d)", name, ds.Sent, ds.Skipped, want, calls, perStream)
		}
		if ds.Received != ds.Sent || ds.Lost != 0 || ds.LossPct != 0 {
			t.Errorf("%s: received %d of %d (lost %d, %.3f%%), want all", name, ds.Received, ds.Sent, ds.Lost, ds.LossPct)
		}
		if ds.Duplicates != 0 || ds.SendErrors != 0 {
			t.Errorf("%s: %d duplicates, %d send errors", name, ds.Duplicates, ds.SendErrors)
		}
		if ds.P50 <= 0 || ds.P99 < ds.P50 || ds.P999 < ds.P99 || ds.Max < ds.P999 {
			t.Errorf("%s: latency quantiles not ordered: p50 %v p99 %v p99.9 %v max %v", name, ds.P50, ds.P99, ds.P999, ds.Max)
		}
	}
	if tr.Misrouted != 0 || tr.ClientInErrors != 0 {
		t.Errorf("misrouted packets: %d, datagrams pion rejected: %d", tr.Misrouted, tr.ClientInErrors)
	}
	if !tr.KernelRxTimestamps {
		t.Errorf("some sockets gave no SO_TIMESTAMPNS receive times")
	}
	// Steady state: every measured client-leg packet went out as ChannelData
	// and came back as ChannelData; STUN traffic did not grow during the run.
	if got := tr.ChannelDataOut - before.chanOut; got != tr.Up.Sent {
		t.Errorf("client legs wrote %d ChannelData messages during the run, want %d", got, tr.Up.Sent)
	}
	// Every packet the client legs received over the load's whole life
	// (warm-ups included) came as ChannelData, none as a Data indication.
	after := load.setupCounts()
	if got, want := tr.ChannelDataIn, tr.Down.Received+tr.Down.Duplicates+after.warmDown; got != want {
		t.Errorf("client legs read %d ChannelData messages, want %d (%d measured + %d warm-up packets)", got, want, tr.Down.Received+tr.Down.Duplicates, after.warmDown)
	}
	if tr.StunOut != before.stunOut {
		t.Errorf("client legs wrote %d STUN messages during the run, want 0", tr.StunOut-before.stunOut)
	}
	return tr, load
}

func TestLoadAgainstPionServer(t *testing.T) {
	srv := startPionServer(t)
	tr := runTinyLoad(t, srv.v4, srv.v6, testUser, testPass, testRealm, 5, time.Second)
	t.Logf("up %+v", tr.Up)
}

// TestPeerLegRejectsWrongSource checks that a bench packet reaching the
// shared peer socket from anywhere but its call's relayed address is not
// counted as received (it is counted as misrouted).
// TestLoadSpinning runs the load with the spinning pacer: the same exact
// counts, the polling loop itself reads traffic, and the busy share is a
// fraction of one core.
func TestLoadSpinning(t *testing.T) {
	srv := startPionServer(t)
	tr, load := runTinyLoadConfig(t, LoadConfig{
		Server4: srv.v4, Server6: srv.v6,
		Username: testUser, Password: testPass, Realm: testRealm,
		Calls: 5, Spin: true,
	}, time.Second)
	if !tr.GeneratorSpin || tr.GeneratorBusy <= 0 || tr.GeneratorBusy > 1 {
		t.Errorf("spin %v, busy %.3f; want spinning and 0 < busy <= 1", tr.GeneratorSpin, tr.GeneratorBusy)
	}
	if n := load.spunRx.Load(); n == 0 {
		t.Errorf("the spinning loop read no datagram itself")
	}
}

func TestPeerLegRejectsWrongSource(t *testing.T) {
	srv := startPionServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	load, err := NewLoad(ctx, LoadConfig{
		Server4: srv.v4, Server6: srv.v6,
		Username: testUser, Password: testPass, Realm: testRealm,
		Calls: 2, Paths: []Path{PathV6toV4},
	})
	if err != nil {
		t.Fatalf("NewLoad: %v", err)
	}
	t.Cleanup(load.Close)
	c := load.calls[0]
	spoofer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	buf := make([]byte, PacketSize)
	n, _ := marshalPacket(buf, c.ssrc(true), 1_000_000, wallNow())
	before := load.misrouted.Load()
	if _, err := spoofer.WriteToUDP(buf[:n], c.peerAddr); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for load.misrouted.Load() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter, bounded by the deadline
	}
	if got := load.misrouted.Load() - before; got != 1 {
		t.Fatalf("misrouted grew by %d, want 1", got)
	}
	c.up.mu.Lock()
	defer c.up.mu.Unlock()
	if c.up.received != 0 {
		t.Errorf("spoofed packet counted as received: %d", c.up.received)
	}
}

// TestLoadCloseLeavesNoGoroutines checks that Close stops every goroutine
// the load started (readers, pion's timers) and releases its sockets.
func TestLoadCloseLeavesNoGoroutines(t *testing.T) {
	srv := startPionServer(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	load, err := NewLoad(ctx, LoadConfig{
		Server4: srv.v4, Server6: srv.v6,
		Username: testUser, Password: testPass, Realm: testRealm,
		Calls: 4,
	})
	if err != nil {
		t.Fatalf("NewLoad: %v", err)
	}
	if _, err := load.Run(ctx, 100*time.Millisecond); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := load.Run(ctx, time.Millisecond); !errors.Is(err, ErrAlreadyRan) {
		t.Errorf("second Run: %v, want ErrAlreadyRan", err)
	}
	load.Close()
	load.Close() // idempotent
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling a count, bounded by the deadline
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before NewLoad", n, before)
	}
}
