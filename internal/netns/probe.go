package netns

import (
	"fmt"
	"net/netip"
	"time"
)

// UDPRoundTrip proves two-way reachability: a socket bound to aAddr in a
// sends one datagram to a socket bound to bAddr in b, which answers it.
// It returns the first error (a send error such as ENETUNREACH is wrapped
// as is, so errors.Is works) or a timeout after the given duration.
func UDPRoundTrip(a *Namespace, aAddr netip.Addr, b *Namespace, bAddr netip.Addr, timeout time.Duration) error {
	ca, err := a.ListenUDP(netip.AddrPortFrom(aAddr, 0))
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := b.ListenUDP(netip.AddrPortFrom(bAddr, 0))
	if err != nil {
		return err
	}
	defer cb.Close()
	deadline := time.Now().Add(timeout)
	_ = ca.SetDeadline(deadline)
	_ = cb.SetDeadline(deadline)
	bAP := cb.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
	if _, err := ca.WriteToUDPAddrPort([]byte("ping"), bAP); err != nil {
		return fmt.Errorf("netns: %s %s -> %s %s: %w", a.Role, aAddr, b.Role, bAP, err)
	}
	buf := make([]byte, 64)
	n, from, err := cb.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" {
		return fmt.Errorf("netns: %s %s -> %s %s: not received: %q %v", a.Role, aAddr, b.Role, bAP, buf[:n], err)
	}
	if _, err := cb.WriteToUDPAddrPort([]byte("pong"), from); err != nil {
		return fmt.Errorf("netns: %s %s -> %s %s: %w", b.Role, bAP, a.Role, from, err)
	}
	n, _, err = ca.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "pong" {
		return fmt.Errorf("netns: %s %s -> %s %s: reply not received: %q %v", b.Role, bAP, a.Role, from, buf[:n], err)
	}
	return nil
}

// SendUDP sends one datagram from a wildcard socket of dst's family in the
// namespace to dst and returns the send error, if any: the way to show that
// a family is missing (ENETUNREACH) without needing a receiver.
func (ns *Namespace) SendUDP(dst netip.AddrPort) error {
	src := netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		src = netip.IPv6Unspecified()
	}
	c, err := ns.ListenUDP(netip.AddrPortFrom(src, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte("probe"), dst); err != nil {
		return fmt.Errorf("netns: %s -> %s: %w", ns.Role, dst, err)
	}
	return nil
}
