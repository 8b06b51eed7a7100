package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/freeport"
	"github.com/isthmusrelay/isthmus/relay"
)

// coturn's test tools (Debian package coturn, 4.6.x). CI installs them; a
// developer machine without them skips the interop tests.
const (
	uclientBin = "turnutils_uclient"
	peerBin    = "turnutils_peer"
	// uclientTimeout bounds one uclient run; a healthy run takes 3–5 s
	// (uclient waits about 3 s before it starts sending).
	uclientTimeout = 40 * time.Second
)

// What turnutils_uclient -v prints, e.g.
//
//	0: : IPv4. Received relay addr: 127.0.0.1:56742
//	3: : start_mclient: tot_send_msgs=3, tot_recv_msgs=3
//	3: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
var (
	reRelayAddr = regexp.MustCompile(`(?m)(IPv4|IPv6)\. Received relay addr: (\S+)\s*$`)
	reTotals    = regexp.MustCompile(`(?m)start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost      = regexp.MustCompile(`(?m)Total lost packets (\d+) `)
)

// uclientResult is what one uclient run printed.
type uclientResult struct {
	args       []string
	output     string
	err        error
	relayAddrs []netip.AddrPort
	relayFams  []string // "IPv4"/"IPv6" as uclient labelled each relay address
	sent, recv int
	lost       int
	haveTotals bool
	haveLost   bool
}

func parseUclient(out string) uclientResult {
	r := uclientResult{output: out, sent: -1, recv: -1, lost: -1}
	for _, m := range reRelayAddr.FindAllStringSubmatch(out, -1) {
		r.relayFams = append(r.relayFams, m[1])
		if ap, err := netip.ParseAddrPort(bracketHostPort(m[2])); err == nil {
			r.relayAddrs = append(r.relayAddrs, ap)
		}
	}
	if ms := reTotals.FindAllStringSubmatch(out, -1); len(ms) > 0 {
		last := ms[len(ms)-1]
		r.sent, _ = strconv.Atoi(last[1])
		r.recv, _ = strconv.Atoi(last[2])
		r.haveTotals = true
	}
	if ms := reLost.FindAllStringSubmatch(out, -1); len(ms) > 0 {
		r.lost, _ = strconv.Atoi(ms[len(ms)-1][1])
		r.haveLost = true
	}
	return r
}

// bracketHostPort turns uclient's "::1:53480" into "[::1]:53480".
func bracketHostPort(s string) string {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || !strings.Contains(s[:i], ":") {
		return s
	}
	return "[" + s[:i] + "]" + s[i:]
}

// keyLines keeps the lines of uclient's output the report and failures need.
func keyLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "relay addr") || strings.Contains(l, "tot_send_msgs=") && !strings.Contains(l, "msz=") ||
			strings.Contains(l, "lost packets") || strings.Contains(strings.ToLower(l), "error") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}

// startTurnutilsPeer runs turnutils_peer, an echo server, on 127.0.0.1 and ::1
// with one port free on both, and waits until it echoes on both.
func startTurnutilsPeer(t *testing.T) uint16 {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freeport.DualStack()
		if err != nil {
			t.Fatalf("find a free UDP port: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, peerBin, "-p", strconv.Itoa(int(port)), "-L", "127.0.0.1", "-L", "::1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start %s: %v", peerBin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { cancel(); <-exited }
		ok4 := echoes(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), exited)
		ok6 := ok4 && echoes(netip.AddrPortFrom(netip.IPv6Loopback(), port), exited)
		if ok4 && ok6 {
			t.Cleanup(stop)
			t.Logf("%s -p %d -L 127.0.0.1 -L ::1 (pid %d) echoes on both families", peerBin, port, cmd.Process.Pid)
			return port
		}
		stop()
		t.Logf("%s on port %d did not echo (attempt %d); output: %s", peerBin, port, attempt+1, out.String())
	}
	t.Fatalf("%s never became ready", peerBin)
	return 0
}

// echoes probes an echo server until it answers, it exits, or 5 s pass.
func echoes(ap netip.AddrPort, exited <-chan struct{}) bool {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return false
	}
	defer conn.Close()
	probe := []byte("isthmus-probe")
	buf := make([]byte, 64)
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		select {
		case <-exited:
			return false
		default:
		}
		_, _ = conn.Write(probe)
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && bytes.Equal(buf[:n], probe) {
			return true
		}
	}
	return false
}

// TestInteropCoturnUclient drives our relay with coturn's turnutils_uclient
// against turnutils_peer, a TURN client and peer no one here wrote. All cases
// run concurrently (uclient spends most of a run waiting), then each is checked
// in its own subtest.
func TestInteropCoturnUclient(t *testing.T) {
	for _, bin := range []string{uclientBin, peerBin} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y coturn): %v", bin, err)
		}
	}
	// Wrong-password runs sign in as their own users: failures are
	// throttled per source and username, and every run shares ::1.
	r := startRelay(t, func(c *relay.Config) { c.Users = append(c.Users, "erin:erin-pass") })
	peerPort := startTurnutilsPeer(t)
	peer4, peer6 := "127.0.0.1", "::1"

	const msgs = 20
	type interopCase struct {
		name     string
		server   string // "4" or "6": the family the client uses to reach the relay
		flags    []string
		peer     string // "" with -y (client to client)
		user     []string
		wantFam  string // family of every relayed address; "" when the run must fail
		sessions int
	}
	static := []string{"-u", testUser, "-w", testPassword}
	rest := []string{"-u", "carol", "-W", testSecret}
	cases := []interopCase{
		{name: "RFC6156: IPv6 client, no family requested -> IPv4 relay, IPv4 peer, ChannelData, UDP",
			server: "6", peer: peer4, user: static, wantFam: "IPv4"},
		{name: "RFC6156: IPv6 client, IPv6 relay requested (-x), IPv6 peer, ChannelData, UDP",
			server: "6", flags: []string{"-x"}, peer: peer6, user: static, wantFam: "IPv6"},
		{name: "Send/Data indications (-s): IPv6 client, IPv4 relay, UDP",
			server: "6", flags: []string{"-s"}, peer: peer4, user: static, wantFam: "IPv4"},
		{name: "Send/Data indications (-s): IPv6 client, IPv6 relay (-x), UDP",
			server: "6", flags: []string{"-s", "-x"}, peer: peer6, user: static, wantFam: "IPv6"},
		{name: "TCP client transport (-t): IPv6 client, IPv4 relay, ChannelData",
			server: "6", flags: []string{"-t"}, peer: peer4, user: static, wantFam: "IPv4"},
		{name: "TCP client transport (-t): IPv6 client, IPv6 relay (-x), Send indications (-s)",
			server: "6", flags: []string{"-t", "-x", "-s"}, peer: peer6, user: static, wantFam: "IPv6"},
		{name: "RFC6156: IPv4 client, IPv6 relay requested (-x), IPv6 peer, UDP",
			server: "4", flags: []string{"-x"}, peer: peer6, user: static, wantFam: "IPv6"},
		{name: "RFC6156: IPv4 client, IPv4 relay requested explicitly (-X), TCP",
			server: "4", flags: []string{"-X", "-t"}, peer: peer4, user: static, wantFam: "IPv4"},
		{name: "TURN REST secret (-W): IPv6 client, IPv4 relay, UDP",
			server: "6", peer: peer4, user: rest, wantFam: "IPv4"},
		{name: "TURN REST secret (-W): IPv6 client, IPv6 relay (-x), TCP",
			server: "6", flags: []string{"-x", "-t"}, peer: peer6, user: rest, wantFam: "IPv6"},
		{name: "client to client (-y), 2 sessions: IPv6 clients, IPv4 relays",
			server: "6", flags: []string{"-y"}, user: static, wantFam: "IPv4", sessions: 2},
		{name: "RFC8489 9.2: wrong password -> no allocation",
			server: "6", peer: peer4, user: []string{"-u", "erin", "-w", "not-erin-pass"}},
		{name: "TURN REST: wrong secret (-W) -> no allocation",
			server: "6", peer: peer4, user: []string{"-u", "dave", "-W", "not-" + testSecret}},
	}

	argv := make([][]string, len(cases))
	for i, tc := range cases {
		sessions := tc.sessions
		if sessions == 0 {
			sessions = 1
		}
		srv := r.Addr(tc.server)
		args := []string{"-v", "-c", "-n", strconv.Itoa(msgs), "-m", strconv.Itoa(sessions), "-l", "120", "-z", "10",
			"-p", strconv.Itoa(int(srv.Port()))}
		args = append(args, tc.user...)
		args = append(args, tc.flags...)
		if tc.peer != "" {
			args = append(args, "-e", tc.peer, "-r", strconv.Itoa(int(peerPort)))
		}
		args = append(args, srv.Addr().String())
		argv[i] = args
	}
	results := runUclients(argv)

	for i, tc := range cases {
		res := results[i]
		sessions := tc.sessions
		if sessions == 0 {
			sessions = 1
		}
		t.Run(tc.name, func(t *testing.T) {
			cmdline := uclientBin + " " + strings.Join(res.args, " ")
			t.Logf("$ %s\n%s", cmdline, keyLines(res.output))
			if tc.wantFam == "" {
				if res.err == nil {
					t.Errorf("%s: exit status 0, want a failure", cmdline)
				}
				if len(res.relayAddrs) != 0 || len(res.relayFams) != 0 {
					t.Errorf("got relay addresses %v, want none", res.relayAddrs)
				}
				if !strings.Contains(res.output, "Cannot complete Allocation") {
					t.Errorf("output lacks %q:\n%s", "Cannot complete Allocation", res.output)
				}
				return
			}
			if res.err != nil {
				t.Errorf("%s: %v\n%s", cmdline, res.err, res.output)
				return
			}
			if len(res.relayFams) == 0 {
				t.Fatalf("uclient printed no \"Received relay addr\" line:\n%s", res.output)
			}
			for j, fam := range res.relayFams {
				if fam != tc.wantFam {
					t.Errorf("relay address %d labelled %s, want %s", j, fam, tc.wantFam)
				}
			}
			for _, ap := range res.relayAddrs {
				if got := familyLabel(ap.Addr()); got != tc.wantFam {
					t.Errorf("relay address %s is %s, want %s", ap, got, tc.wantFam)
				}
				if !ap.Addr().IsLoopback() {
					t.Errorf("relay address %s is not one of the configured relay IPs (loopback)", ap)
				}
			}
			if len(res.relayAddrs) != len(res.relayFams) {
				t.Errorf("could not parse every relay address: %v from %v", res.relayAddrs, res.relayFams)
			}
			if !res.haveTotals || !res.haveLost {
				t.Fatalf("uclient printed no totals:\n%s", res.output)
			}
			// With -y a session is a pair of clients sending to each other;
			// uclient still counts msgs per session.
			want := msgs * sessions
			if res.sent != want || res.recv != want {
				t.Errorf("tot_send_msgs=%d tot_recv_msgs=%d, want %d and %d", res.sent, res.recv, want, want)
			}
			if res.lost != 0 {
				t.Errorf("Total lost packets %d, want 0", res.lost)
			}
		})
	}
}

// familyLabel names an address's family the way uclient does.
func familyLabel(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IPv4"
	}
	return "IPv6"
}

func TestParseUclient(t *testing.T) {
	out := `0: : IPv6. Connected to: ::1:34780
0: : IPv4. Received relay addr: 127.0.0.1:56742
0: : IPv6. Received relay addr: ::1:53480
1: : start_mclient: msz=1, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0, tot_recv_bytes ~ 0
3: : start_mclient: tot_send_msgs=5, tot_recv_msgs=4
3: : Total lost packets 1 (20.000000%), total send dropped 0 (0.000000%)
`
	r := parseUclient(out)
	if got, want := fmt.Sprint(r.relayFams), "[IPv4 IPv6]"; got != want {
		t.Errorf("families %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(r.relayAddrs), "[127.0.0.1:56742 [::1]:53480]"; got != want {
		t.Errorf("addresses %s, want %s", got, want)
	}
	if r.sent != 5 || r.recv != 4 || r.lost != 1 || !r.haveTotals || !r.haveLost {
		t.Errorf("totals sent=%d recv=%d lost=%d, want 5 4 1", r.sent, r.recv, r.lost)
	}
}

// runUclients runs turnutils_uclient once per argument list, all at once,
// each bounded by uclientTimeout, and returns their parsed results in order.
func runUclients(argv [][]string) []uclientResult {
	results := make([]uclientResult, len(argv))
	var wg sync.WaitGroup
	for i, args := range argv {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), uclientTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, uclientBin, args...)
			cmd.WaitDelay = time.Second
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				err = fmt.Errorf("killed after %v: %w", uclientTimeout, ctx.Err())
			}
			res := parseUclient(string(out))
			res.args, res.err = args, err
			results[i] = res
		}()
	}
	wg.Wait()
	return results
}
