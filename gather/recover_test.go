package gather

import (
	"net/netip"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// TestRecoverAfterSelectedSocketCloses: the selected pair's local socket
// goes away (as when its address is deleted); within a few seconds media
// flows both ways again on another pair (IPv4 after IPv6) without any
// signalling.
func TestRecoverAfterSelectedSocketCloses(t *testing.T) {
	cfg := Config{HostAddrs: []netip.Addr{lo4, lo6}, ConsentTimeout: 3 * time.Second}
	off, ans := newTestAgent(t, cfg), newTestAgent(t, cfg)
	om, am := connectPair(t, off, ans)
	exchangeRTP(t, om, am)
	before := om.Selected()
	if before.LocalFamily != netaddr.IPv6 {
		t.Fatalf("want the IPv6 pair first (RFC 8421), got %s", before)
	}
	off.mu.Lock()
	var closed bool
	for _, lc := range off.cands {
		if lc.addr == before.Local {
			_ = lc.conn.Close()
			closed = true
		}
	}
	off.mu.Unlock()
	if !closed {
		t.Fatalf("no socket at %s", before.Local)
	}
	start := time.Now()
	deadline := start.Add(8 * time.Second)
	buf := make([]byte, 1500)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("media did not resume within 8 s; offerer path %s, answerer %s", om.Selected(), am.Selected())
		}
		_, _ = om.Write([]byte("ping"))
		_ = am.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := am.Read(buf)
		if err != nil || string(buf[:n]) != "ping" {
			continue
		}
		_, _ = am.Write([]byte("pong"))
		_ = om.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := om.Read(buf); err == nil && string(buf[:n]) == "pong" {
			break
		}
	}
	after := om.Selected()
	t.Logf("media resumed after %v: %s -> %s", time.Since(start).Round(time.Millisecond), before, after)
	if after.Local == before.Local {
		t.Errorf("still on the dead local candidate %s", after.Local)
	}
	_ = am.SetReadDeadline(time.Time{})
	_ = om.SetReadDeadline(time.Time{})
}
