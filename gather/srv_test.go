//go:build linux

package gather

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/siplocate"
	"github.com/isthmusrelay/isthmus/siplocate/dnstest"
)

// TestGatherTURNBySRV is RFC 5928 §3 as an IPv6-only softphone meets it: the
// TURN URI names a domain without a port, the server is found through
// _turn._udp SRV and its target's AAAA record, and the agent gets an IPv4
// relayed candidate over IPv6 (RFC 6157 §4.2). The domain exists only in
// the test's DNS server, so no fallback to the system resolver can pass.
func TestGatherTURNBySRV(t *testing.T) {
	srv := startOurRelay(t)
	zone := dnstest.Serve(t, "127.0.0.1",
		fmt.Sprintf("_turn._udp.example.test. SRV 0 5 %d relay6.example.test.", srv.port6),
		fmt.Sprintf("_turn._tcp.example.test. SRV 0 5 %d relay4.example.test.", srv.port4),
		"relay6.example.test. AAAA ::1",
		"relay4.example.test. A 127.0.0.1",
	)
	cases := []struct {
		name string
		fams []netaddr.Family
		url  string
	}{
		{"udp: SRV then AAAA", []netaddr.Family{netaddr.IPv6}, "turn:example.test"},
		{"tcp: SRV then A", []netaddr.Family{netaddr.IPv4}, "turn:example.test?transport=tcp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAgent(t, Config{
				HostAddrs: []netip.Addr{lo4, lo6}, Families: tc.fams,
				RelayFamilies: []netaddr.Family{netaddr.IPv4},
				TURN:          []string{tc.url}, Username: testUser, Password: testPass,
				Timeout: 3 * time.Second, Locator: &siplocate.Resolver{Server: zone.Addr},
			})
			cands, err := a.Gather(context.Background(), nil)
			if err != nil {
				t.Fatalf("Gather: %v", err)
			}
			got := countCandidates(t, cands)
			if got[ice.CandidateTypeRelay][netaddr.IPv4] != 1 {
				t.Errorf("relayed IPv4 candidates: got %d, want 1 (all: %v, stats %+v)",
					got[ice.CandidateTypeRelay][netaddr.IPv4], cands, a.Stats())
			}
		})
	}
}

// TestTURNHappyEyeballs: a dual-stack TURN name whose IPv6 address is dead
// (nothing answers there) still gives the IPv6 relayed candidate: after
// RFC 8305's attempt delay the agent asks over IPv4 too, well before the
// gathering deadline.
func TestTURNHappyEyeballs(t *testing.T) {
	srv := startOurRelay(t)
	dead, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	deadPort := dead.LocalAddr().(*net.UDPAddr).Port
	zone := dnstest.Serve(t, "127.0.0.1",
		fmt.Sprintf("_turn._udp.he.test. SRV 0 5 %d dead6.he.test.", deadPort),
		fmt.Sprintf("_turn._udp.he.test. SRV 1 5 %d live4.he.test.", srv.port4),
		"dead6.he.test. AAAA ::1",
		"live4.he.test. A 127.0.0.1",
	)
	const timeout = 3 * time.Second
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo4, lo6}, RelayFamilies: []netaddr.Family{netaddr.IPv6},
		TURN: []string{"turn:he.test"}, Username: testUser, Password: testPass,
		Timeout: timeout, Locator: &siplocate.Resolver{Server: zone.Addr},
	})
	start := time.Now()
	cands, err := a.Gather(context.Background(), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if got := countCandidates(t, cands); got[ice.CandidateTypeRelay][netaddr.IPv6] != 1 {
		t.Fatalf("no IPv6 relayed candidate over IPv4 (candidates %v, stats %+v)", cands, a.Stats())
	}
	if took > timeout/2 {
		t.Errorf("Gather took %s (deadline %s)", took, timeout)
	}
}
