package gather

import (
	"net/netip"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// TestMediaStats: after an ICE call on loopback, Stats counts what each
// side wrote and read (packets and bytes agree across the two sides), has
// a last-received time, reports the selected pair as Selected does, and
// the controlling side has a round-trip time from its checks.
func TestMediaStats(t *testing.T) {
	cfg := Config{HostAddrs: []netip.Addr{lo4}, Families: []netaddr.Family{netaddr.IPv4}}
	off, ans := newTestAgent(t, cfg), newTestAgent(t, cfg)
	om, am := connectPair(t, off, ans)
	if st := om.Stats(); st.PacketsSent != 0 || st.PacketsReceived != 0 || !st.LastReceived.IsZero() {
		t.Fatalf("stats before any media: %+v", st)
	}
	start := time.Now()
	exchangeRTP(t, om, am)
	ost, ast := om.Stats(), am.Stats()
	rtpBytes := uint64(rtpCount * (12 + 160))
	for _, c := range []struct {
		name string
		st   MediaStats
	}{{"offerer", ost}, {"answerer", ast}} {
		if c.st.PacketsSent != rtpCount || c.st.PacketsReceived != rtpCount ||
			c.st.BytesSent != rtpBytes || c.st.BytesReceived != rtpBytes {
			t.Errorf("%s: %+v, want %d packets (%d bytes) each way", c.name, c.st, rtpCount, rtpBytes)
		}
		if c.st.LastReceived.Before(start) || c.st.LastReceived.After(time.Now()) {
			t.Errorf("%s: LastReceived %v not during the exchange", c.name, c.st.LastReceived)
		}
		if c.st.Path.Mode != ModeICE || c.st.Path.LocalType != "host" || c.st.Path.LocalFamily != netaddr.IPv4 {
			t.Errorf("%s: path %s", c.name, c.st.Path)
		}
	}
	if ost.Path != om.Selected() || ost.Path.Local != ast.Path.Remote && ast.Path.RemoteType != "prflx" {
		t.Errorf("pair: offerer %+v, answerer %+v", ost.Path, ast.Path)
	}
	if ost.RTT <= 0 || ost.RTT > time.Second || ost.ChecksAnswered == 0 {
		t.Errorf("offerer RTT %v after %d answered checks, want a loopback round trip", ost.RTT, ost.ChecksAnswered)
	}
	t.Logf("offerer %+v", ost)
	t.Logf("answerer %+v", ast)
}
