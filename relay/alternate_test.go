package relay_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/internal/freeport"
	"github.com/isthmusrelay/isthmus/relay"
)

// wantTryAlternate checks that res is a signed 300 Try Alternate naming
// want (and domain, when not empty).
func wantTryAlternate(t *testing.T, c *stunClient, res *stun.Message, want netip.AddrPort, domain string) {
	t.Helper()
	if errorCode(res) != int(stun.CodeTryAlternate) {
		t.Fatalf("Allocate from %s: got %s, want 300 Try Alternate", c.LocalAddr(), describe(res))
	}
	var as stun.AlternateServer
	if err := as.GetFrom(res); err != nil {
		t.Fatalf("300 without ALTERNATE-SERVER: %v (%s)", err, res)
	}
	got, _ := netip.AddrFromSlice(as.IP)
	if ap := netip.AddrPortFrom(got.Unmap(), uint16(as.Port)); ap != want { //nolint:gosec // a port
		t.Errorf("ALTERNATE-SERVER %s, want %s (the client's family, RFC 8489 §14.15)", ap, want)
	}
	d, err := res.Get(stun.AttrAlternateDomain)
	switch {
	case domain == "" && err == nil:
		t.Errorf("ALTERNATE-DOMAIN %q sent, none configured", d)
	case domain != "" && string(d) != domain:
		t.Errorf("ALTERNATE-DOMAIN %q (%v), want %q", d, err, domain)
	}
	// RFC 8489 §14.8: a 300 must carry MESSAGE-INTEGRITY, with the
	// request's key.
	if err := stun.NewLongTermIntegrity(c.Username, c.Realm, c.Password).Check(res); err != nil {
		t.Errorf("300 MESSAGE-INTEGRITY: %v", err)
	}
}

func TestAlternateServerWhenDraining(t *testing.T) {
	alt4 := netip.MustParseAddrPort("127.0.0.1:40000")
	alt6 := netip.MustParseAddrPort("[::1]:40002")
	const domain = "turn2.example.net"
	r := startRelay(t, func(c *relay.Config) {
		c.AlternateServers = []string{alt4.String(), alt6.String()}
		c.AlternateDomain = domain
	})
	// Before the drain, allocations are served here.
	c0 := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	c0.MustAllocate()
	if err := r.Server.Drain(canceledCtx()); err == nil {
		t.Fatal("Drain returned nil with a live allocation and a canceled context")
	}
	for _, tc := range []struct {
		fam, network string
		want         netip.AddrPort
	}{{"4", "udp", alt4}, {"6", "udp", alt6}, {"6", "tcp", alt6}, {"4", "tcp", alt4}} {
		c := dialSTUN(t, tc.network, r.Addr(tc.fam), testUser, testPassword)
		wantTryAlternate(t, c, c.Allocate(), tc.want, domain)
	}
	// The live allocation is untouched: Refresh still works while draining.
	if res := c0.Request(stun.MethodRefresh, lifetime(600)); res.Type.Class != stun.ClassSuccessResponse {
		t.Errorf("Refresh during drain: %s", describe(res))
	}
	if n, _ := r.MetricSum(t, []string{"alternate_redirects_total"}, "reason=draining"); n != 4 {
		t.Errorf("alternate_redirects_total{reason=draining} = %v, want 4", n)
	}
}

func TestAlternateServerOverQuota(t *testing.T) {
	alt4 := netip.MustParseAddrPort("127.0.0.1:40010")
	r := startRelay(t, func(c *relay.Config) {
		c.AlternateServers = []string{alt4.String()} // no IPv6 alternate
		c.UserQuota = 1
		c.MaxAllocations = 2
	})
	a1 := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	a1.MustAllocate()
	// alice is at her quota: 300 instead of 486 over IPv4 ...
	a2 := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	wantTryAlternate(t, a2, a2.Allocate(), alt4, "")
	// ... and the 486 as before where no alternate of the client's family exists.
	a3 := dialSTUN(t, "udp", r.Addr("6"), testUser, testPassword)
	if res := a3.Allocate(); errorCode(res) != int(stun.CodeAllocQuotaReached) {
		t.Errorf("IPv6 client over quota, no IPv6 alternate: got %s, want 486", describe(res))
	}
	// max_allocations: a REST user fills the relay; the next one is redirected.
	bobUser, bobPass := relay.RESTCredential(testSecret, "bob", time.Now().Add(time.Hour))
	b1 := dialSTUN(t, "udp", r.Addr("4"), bobUser, bobPass)
	b1.MustAllocate()
	carolUser, carolPass := relay.RESTCredential(testSecret, "carol", time.Now().Add(time.Hour))
	b2 := dialSTUN(t, "udp", r.Addr("4"), carolUser, carolPass)
	wantTryAlternate(t, b2, b2.Allocate(), alt4, "")
	if n, _ := r.MetricSum(t, []string{"alternate_redirects_total"}, "reason=user"); n != 1 {
		t.Errorf("alternate_redirects_total{reason=user} = %v, want 1", n)
	}
	if n, _ := r.MetricSum(t, []string{"alternate_redirects_total"}, "reason=total"); n != 1 {
		t.Errorf("alternate_redirects_total{reason=total} = %v, want 1", n)
	}
	// Reload without alternates: back to 508.
	cfg := testConfig()
	cfg.UserQuota, cfg.MaxAllocations = 1, 2
	if err := r.Server.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	b3 := dialSTUN(t, "udp", r.Addr("4"), carolUser, carolPass)
	if res := b3.Allocate(); errorCode(res) != int(stun.CodeInsufficientCapacity) {
		t.Errorf("full relay, alternates reloaded away: got %s, want 508", describe(res))
	}
}

func TestAlternateServerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		servers []string
		domain  string
		want    string
	}{
		{[]string{"turn2.example.net:3478"}, "", "alternate_servers"},
		{[]string{"127.0.0.1"}, "", "alternate_servers"},
		{[]string{"127.0.0.1:0"}, "", "alternate_servers"},
		{[]string{"0.0.0.0:3478"}, "", "alternate_servers"},
		{nil, "turn2.example.net", "alternate_domain: needs alternate_servers"},
		{[]string{"127.0.0.1:3478"}, "bad domain", "alternate_domain"},
	} {
		cfg := testConfig()
		cfg.AlternateServers, cfg.AlternateDomain = tc.servers, tc.domain
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("alternate_servers=%v alternate_domain=%q: Validate() = %v, want an error naming %q", tc.servers, tc.domain, err, tc.want)
		}
	}
}

// TestInteropUclientFollowsAlternate: coturn's turnutils_uclient, pointed at
// a draining relay, gets 300 Try Alternate on its probe Allocate and then
// relays through the alternate (RFC 8489 §10), both relays on loopback.
func TestInteropUclientFollowsAlternate(t *testing.T) {
	for _, bin := range []string{uclientBin, peerBin} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install -y coturn): %v", bin, err)
		}
	}
	second := startRelay(t, nil)
	first := startRelay(t, func(c *relay.Config) {
		c.AlternateServers = []string{second.Addr("4").String(), second.Addr("6").String()}
	})
	if err := first.Server.Drain(context.Background()); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	peerPort := startTurnutilsPeer(t)
	const msgs = 10
	var argv [][]string
	for _, fam := range []string{"4", "6"} {
		srv := first.Addr(fam)
		argv = append(argv, []string{"-v", "-c", "-n", strconv.Itoa(msgs), "-l", "120", "-z", "10",
			"-u", testUser, "-w", testPassword, "-e", "127.0.0.1", "-r", strconv.Itoa(int(peerPort)),
			"-p", strconv.Itoa(int(srv.Port())), srv.Addr().String()})
	}
	for i, res := range runUclients(argv) {
		cmdline := uclientBin + " " + strings.Join(res.args, " ")
		t.Logf("$ %s\n%s", cmdline, keyLines(res.output))
		if res.err != nil {
			t.Errorf("%s: %v\n%s", cmdline, res.err, res.output)
			continue
		}
		if !strings.Contains(res.output, "error 300") {
			t.Errorf("run %d: uclient did not report the 300:\n%s", i, res.output)
		}
		if res.sent != msgs || res.recv != msgs || res.lost != 0 {
			t.Errorf("run %d: sent %d received %d lost %d, want %d %d 0", i, res.sent, res.recv, res.lost, msgs, msgs)
		}
	}
	if n, _ := first.MetricSum(t, []string{"alternate_redirects_total"}, "reason=draining"); n < 2 {
		t.Errorf("first relay: alternate_redirects_total{reason=draining} = %v, want >= 2", n)
	}
	if n, _ := first.MetricSum(t, []string{"allocations_created_total"}); n != 0 {
		t.Errorf("first (draining) relay created %v allocations, want 0", n)
	}
	if n, _ := second.MetricSum(t, []string{"allocations_created_total"}); n < 2 {
		t.Errorf("second relay created %v allocations, want >= 2 (one per uclient run)", n)
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// With the IPv4 relay IP's ports all used, an IPv4 Allocate is redirected
// (reason ports) while IPv6 ones, whose relay IP has its own pool, are
// still served.
func TestAlternateServerPortsFull(t *testing.T) {
	lo, err := freeport.UDPPair() // a fixed range collided with other programs
	if err != nil {
		t.Fatal(err)
	}
	alt4 := netip.MustParseAddrPort("127.0.0.1:40020")
	r := startRelay(t, func(c *relay.Config) {
		c.AlternateServers = []string{alt4.String()}
		c.MinPort, c.MaxPort = int(lo), int(lo)+1 // two ports per relay IP
	})
	for i := 0; i < 2; i++ {
		u, p := relay.RESTCredential(testSecret, "fill"+strconv.Itoa(i), time.Now().Add(time.Hour))
		dialSTUN(t, "udp", r.Addr("4"), u, p).MustAllocate()
	}
	c := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	wantTryAlternate(t, c, c.Allocate(), alt4, "")
	if n, _ := r.MetricSum(t, []string{"alternate_redirects_total"}, "reason=ports"); n != 1 {
		t.Errorf("alternate_redirects_total{reason=ports} = %v, want 1", n)
	}
	// An IPv6 relayed address (requested over IPv4) comes from ::1's pool.
	c6 := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	c6.MustAllocate(requestedFamily(0x02))
}
