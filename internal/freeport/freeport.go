// Package freeport picks a port number that is free on both loopback
// families at once, for a server that listens on 127.0.0.1 and ::1 with one
// port (coturn's listening-port, turnutils_peer -p, a TLS listener).
package freeport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// tries bounds the search: a port the kernel hands out for 127.0.0.1 is
// usually free on ::1 too, so a handful of tries is plenty.
const tries = 50

// DualStack returns a port free right now for UDP and TCP on 127.0.0.1 and
// ::1. Nothing holds it: a caller that binds it a moment later may lose a
// race with another process and should retry with a new port.
func DualStack() (uint16, error) {
	v4 := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for range tries {
		first, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(v4, 0)))
		if err != nil {
			return 0, fmt.Errorf("freeport: listen udp 127.0.0.1: %w", err)
		}
		port := uint16(first.LocalAddr().(*net.UDPAddr).Port)
		ok := freeOn(netip.AddrPortFrom(netip.IPv6Loopback(), port), "udp6") &&
			freeOn(netip.AddrPortFrom(v4, port), "tcp4") &&
			freeOn(netip.AddrPortFrom(netip.IPv6Loopback(), port), "tcp6")
		_ = first.Close()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("freeport: no port free for UDP and TCP on both 127.0.0.1 and ::1")
}

// UDPPair returns two consecutive ports, lo and lo+1, free right now for
// UDP on 127.0.0.1 and ::1: a relay port range holding exactly two ports,
// for a test that fills it. Like DualStack, nothing holds them.
func UDPPair() (lo uint16, err error) {
	v4 := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for range tries {
		first, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(v4, 0)))
		if err != nil {
			return 0, fmt.Errorf("freeport: listen udp 127.0.0.1: %w", err)
		}
		port := uint16(first.LocalAddr().(*net.UDPAddr).Port)
		_ = first.Close()
		if port == 65535 {
			continue
		}
		ok := true
		for _, ap := range []netip.AddrPort{
			netip.AddrPortFrom(v4, port), netip.AddrPortFrom(v4, port+1),
			netip.AddrPortFrom(netip.IPv6Loopback(), port), netip.AddrPortFrom(netip.IPv6Loopback(), port+1),
		} {
			ok = ok && freeOn(ap, "udp")
		}
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("freeport: no two consecutive ports free for UDP on both 127.0.0.1 and ::1")
}

// freeOn reports whether ap can be bound on network now.
func freeOn(ap netip.AddrPort, network string) bool {
	if network[0] == 'u' {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	l, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
