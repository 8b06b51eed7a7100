//go:build linux

package gather

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// TestCloseLeaksNothing: after a relayed call is closed, every goroutine
// the agents started (pion/ice loops, TURN client readers and refresh
// timers, candidate receive loops) is gone.
func TestCloseLeaksNothing(t *testing.T) {
	srv := startOurRelay(t)
	before := runtime.NumGoroutine()
	off, err := NewAgent(Config{
		HostAddrs: []netip.Addr{lo6}, Families: []netaddr.Family{netaddr.IPv6},
		TURN: []string{srv.url("::1", "udp")}, Username: testUser, Password: testPass,
	})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := NewAgent(Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	om, am := connectPair(t, off, ans)
	exchangeRTP(t, om, am)
	if err := om.Close(); err != nil {
		t.Errorf("offerer close: %v", err)
	}
	if err := ans.Close(); err != nil {
		t.Errorf("answerer close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a count, bounded by deadline
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
