package siplocate_test

import (
	"net"
	"net/netip"
	"testing"
)

// Fake source-address tables for RFC 6724 ordering of documentation
// addresses: nothing is sent to them, and no route is looked up.
var (
	src6 = netip.MustParseAddr("2001:db8::99")
	src4 = netip.MustParseAddr("192.0.2.99")
)

func dualStack(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return src4, true
	}
	return src6, true
}

func ipv6Only(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return netip.Addr{}, false
	}
	return src6, true
}

func ipv4Only(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return src4, true
	}
	return netip.Addr{}, false
}

// silentUDP returns the address of a loopback UDP socket that reads and
// never answers: a DNS server that has died without ICMP.
func silentUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}
