//go:build linux

package gather

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// candFamily is the family of a candidate's address.
func candFamily(t *testing.T, c ice.Candidate) netaddr.Family {
	t.Helper()
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		t.Fatalf("candidate %s: address: %v", c, err)
	}
	return netaddr.FamilyOf(a.Unmap())
}

// census counts candidates by type and family.
type census map[ice.CandidateType]map[netaddr.Family]int

func countCandidates(t *testing.T, cands []ice.Candidate) census {
	out := census{}
	for _, c := range cands {
		if out[c.Type()] == nil {
			out[c.Type()] = map[netaddr.Family]int{}
		}
		out[c.Type()][candFamily(t, c)]++
	}
	return out
}

func newTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatalf("NewAgent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// TestGatherCrossFamilyRelay is RFC 6157 §4.2 against a real TURN server:
// an agent reaches the server over the families it has and gets relayed
// candidates of the families it asked for.
func TestGatherCrossFamilyRelay(t *testing.T) {
	forEachTURN(t, testGatherCrossFamilyRelay)
}

func testGatherCrossFamilyRelay(t *testing.T, srv turnServer) {
	cases := []struct {
		name       string
		fams       []netaddr.Family
		relayFams  []netaddr.Family
		turn       []string
		wantRelay  map[netaddr.Family]int
		wantHostOf netaddr.Family // 0 = both
	}{
		{
			name: "RFC6157 4.2: IPv6-only agent gets an IPv4 relay over IPv6",
			fams: []netaddr.Family{netaddr.IPv6}, relayFams: []netaddr.Family{netaddr.IPv4},
			turn:      []string{srv.url("::1", "udp")},
			wantRelay: map[netaddr.Family]int{netaddr.IPv4: 1}, wantHostOf: netaddr.IPv6,
		},
		{
			name: "IPv4-only agent gets an IPv6 relay over IPv4",
			fams: []netaddr.Family{netaddr.IPv4}, relayFams: []netaddr.Family{netaddr.IPv6},
			turn:      []string{srv.url("127.0.0.1", "udp")},
			wantRelay: map[netaddr.Family]int{netaddr.IPv6: 1}, wantHostOf: netaddr.IPv4,
		},
		{
			name:      "IPv6-only agent asking for both families gets both",
			fams:      []netaddr.Family{netaddr.IPv6},
			turn:      []string{srv.url("::1", "udp")},
			wantRelay: map[netaddr.Family]int{netaddr.IPv4: 1, netaddr.IPv6: 1}, wantHostOf: netaddr.IPv6,
		},
		{
			name: "dual-stack agent gets both relays",
			turn: []string{srv.url("127.0.0.1", ""), srv.url("::1", "")},
			// each server is reachable over one family only (a literal),
			// so each gives both relayed families
			wantRelay: map[netaddr.Family]int{netaddr.IPv4: 2, netaddr.IPv6: 2},
		},
		{
			name: "TURN over TCP (RFC 6062 framing): IPv6-only agent, IPv4 relay",
			fams: []netaddr.Family{netaddr.IPv6}, relayFams: []netaddr.Family{netaddr.IPv4},
			turn:      []string{srv.url("::1", "tcp")},
			wantRelay: map[netaddr.Family]int{netaddr.IPv4: 1}, wantHostOf: netaddr.IPv6,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAgent(t, Config{
				HostAddrs: []netip.Addr{lo4, lo6}, Families: tc.fams, RelayFamilies: tc.relayFams,
				TURN: tc.turn, Username: testUser, Password: testPass, Timeout: 3 * time.Second,
			})
			var trickled []ice.Candidate
			ended := false
			cands, err := a.Gather(context.Background(), func(c ice.Candidate) {
				if ended {
					t.Errorf("candidate after end-of-candidates: %v", c)
				}
				if c == nil {
					ended = true
					return
				}
				trickled = append(trickled, c)
			})
			if err != nil {
				t.Fatalf("Gather: %v (stats %+v)", err, a.Stats())
			}
			if !ended || len(trickled) != len(cands) {
				t.Fatalf("trickle: ended=%t, %d trickled, %d returned", ended, len(trickled), len(cands))
			}
			got := countCandidates(t, cands)
			for _, f := range []netaddr.Family{netaddr.IPv4, netaddr.IPv6} {
				if got[ice.CandidateTypeRelay][f] != tc.wantRelay[f] {
					t.Errorf("relayed %s candidates: got %d, want %d (all: %v, stats %+v)",
						f, got[ice.CandidateTypeRelay][f], tc.wantRelay[f], cands, a.Stats())
				}
				wantHost := 1
				if tc.wantHostOf != 0 && f != tc.wantHostOf {
					wantHost = 0
				}
				if got[ice.CandidateTypeHost][f] != wantHost {
					t.Errorf("host %s candidates: got %d, want %d", f, got[ice.CandidateTypeHost][f], wantHost)
				}
			}
			checkUniquePriorities(t, cands)
			if v4 := tc.wantRelay[netaddr.IPv4]; v4 > 0 && a.Stats().RAFAdded < v4 {
				t.Errorf("REQUESTED-ADDRESS-FAMILY added %d times, want at least %d (one per IPv4 allocation)", a.Stats().RAFAdded, v4)
			}
		})
	}
}

func checkUniquePriorities(t *testing.T, cands []ice.Candidate) {
	t.Helper()
	seen := map[uint32]ice.Candidate{}
	for i, c := range cands {
		if o, dup := seen[c.Priority()]; dup {
			t.Errorf("RFC 8421: %s and %s share priority %d", o, c, c.Priority())
		}
		seen[c.Priority()] = c
		if i > 0 && cands[i-1].Priority() < c.Priority() {
			t.Errorf("candidates not in priority order at %d", i)
		}
	}
}

// TestGatherDeadlineDeadServer: a STUN and a TURN server that never answer
// cost no more than the gathering deadline, and the host candidates still
// come out.
func TestGatherDeadlineDeadServer(t *testing.T) {
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	deadURL := dead.LocalAddr().String()
	const timeout = 400 * time.Millisecond
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo4, lo6},
		STUN:      []string{"stun:" + deadURL},
		TURN:      []string{"turn:" + deadURL + "?transport=udp"},
		Username:  testUser, Password: testPass,
		RelayFamilies: []netaddr.Family{netaddr.IPv4},
		Timeout:       timeout,
	})
	start := time.Now()
	var ends int
	cands, err := a.Gather(context.Background(), func(c ice.Candidate) {
		if c == nil {
			ends++
		}
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	// A functional bound, not a performance one: pion alone would take 5 s.
	if took > 2*timeout+500*time.Millisecond {
		t.Errorf("Gather took %s with a %s deadline", took, timeout)
	}
	st := a.Stats()
	if !st.DeadlineHit || st.Late != 2 {
		t.Errorf("stats %+v: want the deadline hit with 2 late attempts (STUN, TURN over IPv4)", st)
	}
	if ends != 1 {
		t.Errorf("end-of-candidates signalled %d times", ends)
	}
	got := countCandidates(t, cands)
	if got[ice.CandidateTypeHost][netaddr.IPv4] != 1 || got[ice.CandidateTypeHost][netaddr.IPv6] != 1 || len(cands) != 2 {
		t.Errorf("candidates %v: want exactly the two host candidates", cands)
	}
}

// TestGatherSTUN: a STUN Binding over each family; on loopback the mapped
// address equals the base, so the candidate is dropped as redundant
// (RFC 8445 §5.1.3) — which proves the server answered over both families.
func TestGatherSTUN(t *testing.T) {
	forEachTURN(t, testGatherSTUN)
}

func testGatherSTUN(t *testing.T, srv turnServer) {
	a := newTestAgent(t, Config{
		HostAddrs: []netip.Addr{lo4, lo6},
		STUN: []string{
			"stun:" + net.JoinHostPort("127.0.0.1", itoa(srv.port4)),
			"stun:" + net.JoinHostPort("::1", itoa(srv.port6)),
		},
	})
	if _, err := a.Gather(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	// each server has one family: the other family's attempt has no
	// server address and fails fast.
	if st.Redundant != 2 || st.DeadlineHit || len(st.Failed) != 2 {
		t.Errorf("stats %+v: want 2 redundant answers, 2 no-address failures, no deadline", st)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestNewAgentConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"TURN without credentials", Config{TURN: []string{"turn:127.0.0.1:3478"}}},
		{"stun URL in TURN list", Config{TURN: []string{"stun:127.0.0.1:3478"}, Username: "u", Password: "p"}},
		{"bad scheme", Config{STUN: []string{"http://x"}}},
		{"unknown family", Config{Families: []netaddr.Family{5}}},
		{"negative timeout", Config{Timeout: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAgent(tc.cfg)
			if err == nil {
				_ = a.Close()
				t.Fatal("NewAgent accepted it")
			}
		})
	}
}
