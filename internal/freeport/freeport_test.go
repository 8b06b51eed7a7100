package freeport

import (
	"net"
	"net/netip"
	"testing"
)

func TestDualStackPortBindsOnEveryFamilyAndTransport(t *testing.T) {
	port, err := DualStack()
	if err != nil {
		t.Skipf("loopback of both families needed: %v", err)
	}
	for _, tc := range []struct {
		network string
		addr    netip.Addr
	}{{"udp4", netip.MustParseAddr("127.0.0.1")}, {"udp6", netip.IPv6Loopback()}, {"tcp4", netip.MustParseAddr("127.0.0.1")}, {"tcp6", netip.IPv6Loopback()}} {
		ap := netip.AddrPortFrom(tc.addr, port)
		var err error
		if tc.network[0] == 'u' {
			var c *net.UDPConn
			if c, err = net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(ap)); err == nil {
				defer c.Close()
			}
		} else {
			var l *net.TCPListener
			if l, err = net.ListenTCP(tc.network, net.TCPAddrFromAddrPort(ap)); err == nil {
				defer l.Close()
			}
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.network, ap, err)
		}
	}
}

func TestUDPPairBindsBothPortsOnBothFamilies(t *testing.T) {
	lo, err := UDPPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		for _, port := range []uint16{lo, lo + 1} {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
			if err != nil {
				t.Fatalf("UDPPair gave %d: %v", lo, err)
			}
			_ = c.Close()
		}
	}
}
