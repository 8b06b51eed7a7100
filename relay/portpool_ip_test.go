package relay_test

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/relay"
)

// freePortRange finds n consecutive UDP ports that every ip can bind now.
func freePortRange(t *testing.T, n int, ips ...netip.Addr) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(10000)
		ok := true
		var held []*net.UDPConn
		for p := base; p < base+n && ok; p++ {
			for _, ip := range ips {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
				if err != nil {
					ok = false
					break
				}
				held = append(held, c)
			}
		}
		for _, c := range held {
			_ = c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports on %v", n, ips)
	return 0
}

// A relayed transport address is an (IP, port) pair (RFC 8656 §2): with
// two relay IPs of one family, the same port range gives twice the
// allocations, each port once per IP. With one pool shared by all relay IPs
// the fifth allocation on four ports got 508.
func TestPortPoolPerRelayIP(t *testing.T) {
	ipA, ipB := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	const ports = 4
	base := freePortRange(t, ports, ipA, ipB)
	r := startRelay(t, func(c *relay.Config) {
		c.RelayIPs = []string{ipA.String(), ipB.String(), "::1"}
		c.MinPort, c.MaxPort = base, base+ports-1
		c.UserQuota = 0
		c.LogLevel = "info"
	})
	seen := map[netip.AddrPort]bool{}
	perIP := map[netip.Addr]int{}
	for i := 0; i < 2*ports; i++ {
		c := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
		relayed, _ := c.MustAllocate()
		if seen[relayed] {
			t.Fatalf("allocation %d: relayed address %s handed out twice", i+1, relayed)
		}
		if p := int(relayed.Port()); p < base || p >= base+ports {
			t.Fatalf("allocation %d: port %d outside %d..%d", i+1, p, base, base+ports-1)
		}
		seen[relayed] = true
		perIP[relayed.Addr()]++
	}
	if perIP[ipA] != ports || perIP[ipB] != ports {
		t.Fatalf("allocations per relay IP = %v, want %d on each", perIP, ports)
	}
	c := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	if res := c.Allocate(); errorCode(res) != int(stun.CodeInsufficientCapacity) {
		t.Fatalf("allocation %d on %d ports × 2 relay IPs: got %s, want 508", 2*ports+1, ports, describe(res))
	}
}
