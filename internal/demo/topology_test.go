package demo

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the namespace demo needs root to create network namespaces: run `sudo go test ./internal/demo/` (CI runs as root)")
	}
}

// newTopology builds the RFC 6157 Figure 1 topology for one test and tears it down (and
// checks that nothing is left) when the test ends.
func newTopology(t *testing.T, opt TopologyOptions) *Topology {
	t.Helper()
	skipUnlessRoot(t)
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := BuildTopology(ctx, run, opt)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestTopology(t *testing.T) {
	topo := newTopology(t, TopologyOptions{DualStack: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const wait = 5 * time.Second

	t.Run("relay reaches both families", func(t *testing.T) {
		for _, c := range []struct {
			host      *netns.Namespace
			hostAddr  netip.Addr
			relayAddr netip.Addr
		}{
			{topo.UA6, UA6Addr, RelayIPv6},
			{topo.UA4, UA4Addr, RelayIPv4},
			{topo.Legacy4, Legacy4Addr, RelayIPv4},
			{topo.DS1, DS1Addrs[0], RelayIPv4},
			{topo.DS1, DS1Addrs[1], RelayIPv6},
		} {
			if err := netns.UDPRoundTrip(topo.Relay, c.relayAddr, c.host, c.hostAddr, wait); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("ua6 is IPv6-only: IPv4 is network unreachable", func(t *testing.T) {
		for _, dst := range []netip.Addr{RelayIPv4, UA4Addr, netip.MustParseAddr("127.0.0.1")} {
			err := topo.UA6.SendUDP(netip.AddrPortFrom(dst, 3478))
			if !errors.Is(err, syscall.ENETUNREACH) {
				t.Errorf("ua6 -> %s: got %v, want ENETUNREACH", dst, err)
			}
		}
		if a, err := topo.UA6.Addrs(ctx, 4); err != nil || len(a) != 0 {
			t.Errorf("ua6 has IPv4 addresses %v (%v)", a, err)
		}
	})

	t.Run("ua4 and legacy4 are IPv4-only", func(t *testing.T) {
		for _, host := range []*netns.Namespace{topo.UA4, topo.Legacy4} {
			for _, dst := range []netip.Addr{RelayIPv6, UA6Addr} {
				// With IPv6 disabled the kernel has no source address to
				// pick and says so (EADDRNOTAVAIL) before it looks for a route.
				err := host.SendUDP(netip.AddrPortFrom(dst, 3478))
				if !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENETUNREACH) {
					t.Errorf("%s -> %s: got %v, want EADDRNOTAVAIL or ENETUNREACH", host.Role, dst, err)
				}
			}
			if a, err := host.Addrs(ctx, 6); err != nil || len(a) != 0 {
				t.Errorf("%s has IPv6 addresses %v (%v)", host.Role, a, err)
			}
		}
	})

	t.Run("no route across families", func(t *testing.T) {
		// Even the dual-stack hosts, which could address both, cannot make
		// the relay namespace route between its two networks.
		for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			if v, err := topo.Relay.ReadSysctl(key); err != nil || v != "0" {
				t.Errorf("relay %s = %q (%v), want 0", key, v, err)
			}
		}
		if r, err := topo.UA6.Output(ctx, "-6", "route", "show", "default"); err != nil || strings.TrimSpace(r) != "" {
			t.Errorf("ua6 has a default route %q (%v)", r, err)
		}
		if r, err := topo.UA4.Output(ctx, "-4", "route", "show", "default"); err != nil || strings.TrimSpace(r) != "" {
			t.Errorf("ua4 has a default route %q (%v)", r, err)
		}
	})

	t.Run("nothing in the root namespace", func(t *testing.T) {
		links, err := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range []string{"p0-ua6", "p0-ua4", "p0-legacy4", "p4-ds1", "p6-ds2"} {
			if strings.Contains(string(links), port+"@") || strings.Contains(string(links), port+":") {
				t.Errorf("veth end %s is in the root namespace", port)
			}
		}
		addrs, err := exec.CommandContext(ctx, "ip", "-o", "addr", "show").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{RelayIPv4.String() + "/", RelayIPv6.String() + "/", UA6Addr.String() + "/", UA4Addr.String() + "/"} {
			if strings.Contains(string(addrs), a) {
				t.Errorf("address %s found in the root namespace", a)
			}
		}
	})

	t.Run("dual-stack hosts reach each other directly in both families", func(t *testing.T) {
		for i := range 2 {
			if err := netns.UDPRoundTrip(topo.DS1, DS1Addrs[i], topo.DS2, DS2Addrs[i], wait); err != nil {
				t.Error(err)
			}
		}
	})
}
