//go:build e2e

package relay_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestInteropCoturnDualAllocation drives dual allocations (RFC 8656
// ADDITIONAL-ADDRESS-FAMILY, sent by coturn 4.6.1 under the draft code point
// 0x8032) with coturn's turnutils_uclient -Z against turnutils_peer on
// 127.0.0.1 and ::1. uclient relays through the relayed address of its
// default family (IPv4, or IPv6 with -x), so one run per family shows data
// through each half; with -x it prints both relayed addresses, the IPv4 one
// first. Each run's Refreshes carry a random REQUESTED-ADDRESS-FAMILY (or
// none), so per-family Refresh is exercised too.
func TestInteropCoturnDualAllocation(t *testing.T) {
	for _, bin := range []string{uclientBin, peerBin} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y coturn): %v", bin, err)
		}
	}
	r := startRelay(t, nil)
	peerPort := startTurnutilsPeer(t)
	const msgs = 20
	type dualCase struct {
		name      string
		server    string
		flags     []string
		peer      string
		wantFams  []string // relay addresses uclient prints, in order
		wantRelay string   // the family it relays through
	}
	cases := []dualCase{
		{name: "-Z -x: IPv6 client, both relayed addresses, data through the IPv6 one, UDP",
			server: "6", flags: []string{"-Z", "-x"}, peer: "::1", wantFams: []string{"IPv4", "IPv6"}, wantRelay: "IPv6"},
		{name: "-Z: IPv6 client, data through the IPv4 relayed address, UDP",
			server: "6", flags: []string{"-Z"}, peer: "127.0.0.1", wantFams: []string{"IPv4"}, wantRelay: "IPv4"},
		{name: "-Z -x -s: IPv4 client, Send/Data indications through the IPv6 relayed address, UDP",
			server: "4", flags: []string{"-Z", "-x", "-s"}, peer: "::1", wantFams: []string{"IPv4", "IPv6"}, wantRelay: "IPv6"},
		{name: "-Z -x -t: IPv6 client over TCP, data through the IPv6 relayed address",
			server: "6", flags: []string{"-Z", "-x", "-t"}, peer: "::1", wantFams: []string{"IPv4", "IPv6"}, wantRelay: "IPv6"},
		{name: "-Z -t -s: IPv4 client over TCP, Send indications through the IPv4 relayed address",
			server: "4", flags: []string{"-Z", "-t", "-s"}, peer: "127.0.0.1", wantFams: []string{"IPv4"}, wantRelay: "IPv4"},
	}
	argv := make([][]string, len(cases))
	for i, tc := range cases {
		srv := r.Addr(tc.server)
		args := []string{"-v", "-n", strconv.Itoa(msgs), "-l", "120", "-z", "10",
			"-p", strconv.Itoa(int(srv.Port())), "-u", testUser, "-w", testPassword}
		args = append(args, tc.flags...)
		args = append(args, "-e", tc.peer, "-r", strconv.Itoa(int(peerPort)), srv.Addr().String())
		argv[i] = args
	}
	results := runUclients(argv)
	for i, tc := range cases {
		res := results[i]
		t.Run(tc.name, func(t *testing.T) {
			cmdline := uclientBin + " " + strings.Join(res.args, " ")
			t.Logf("$ %s\n%s", cmdline, keyLines(res.output))
			if res.err != nil {
				t.Fatalf("%s: %v\n%s", cmdline, res.err, res.output)
			}
			// uclient allocates twice (a probe allocation, then the
			// session's), printing the relayed addresses of each.
			want := strings.Join(tc.wantFams, ",")
			if n := len(res.relayFams) / len(tc.wantFams); n == 0 || strings.Repeat(want+",", n) != strings.Join(res.relayFams, ",")+"," {
				t.Errorf("relayed addresses printed %v (%v), want families %v per allocation", res.relayAddrs, res.relayFams, tc.wantFams)
			}
			for j, ap := range res.relayAddrs {
				if j < len(res.relayFams) && familyLabel(ap.Addr()) != res.relayFams[j] {
					t.Errorf("relay address %s labelled %s", ap, res.relayFams[j])
				}
				if !ap.Addr().IsLoopback() {
					t.Errorf("relay address %s is not a configured relay IP (loopback)", ap)
				}
			}
			seen := map[string]bool{}
			for _, ap := range res.relayAddrs {
				if seen[ap.String()] {
					t.Errorf("relayed address %s handed out twice: %v", ap, res.relayAddrs)
				}
				seen[ap.String()] = true
			}
			if !res.haveTotals || !res.haveLost {
				t.Fatalf("uclient printed no totals:\n%s", res.output)
			}
			if res.sent != msgs || res.recv != msgs || res.lost != 0 {
				t.Errorf("tot_send_msgs=%d tot_recv_msgs=%d lost=%d through the %s relayed address, want %d, %d, 0",
					res.sent, res.recv, res.lost, tc.wantRelay, msgs, msgs)
			}
		})
	}
}
