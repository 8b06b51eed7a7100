package relayproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// bindingWait is how long one Binding request waits for its answer before
// it is sent again: a server still binding its sockets drops the first ones.
const bindingWait = 250 * time.Millisecond

// ListenFunc opens the UDP socket a Binding probe is sent from; local is
// the unspecified address of the server's family with port 0.
type ListenFunc func(local netip.AddrPort) (*net.UDPConn, error)

// WaitBinding sends STUN Binding requests (RFC 8489 §3) to every address in
// servers until each has answered with a Binding success response, done is
// closed (the server exited: ErrExited) or ctx ends. listen opens the probe
// sockets (nil: net.ListenUDP in this network namespace).
func WaitBinding(ctx context.Context, servers []netip.AddrPort, done <-chan struct{}, listen ListenFunc) error {
	if listen == nil {
		listen = func(local netip.AddrPort) (*net.UDPConn, error) {
			return net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
		}
	}
	for _, server := range servers {
		if err := waitOne(ctx, server, done, listen); err != nil {
			return err
		}
	}
	return nil
}

func waitOne(ctx context.Context, server netip.AddrPort, done <-chan struct{}, listen ListenFunc) error {
	local := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		local = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	c, err := listen(local)
	if err != nil {
		return fmt.Errorf("stun binding to %s: %w", server, err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for attempt := 1; ; attempt++ {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return fmt.Errorf("stun binding to %s: %w", server, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(bindingWait))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("stun binding to %s: %w", server, err)
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID && res.Type == stun.BindingSuccess {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stun binding to %s: no answer after %d attempts: %w", server, attempt, ctx.Err())
		case <-done:
			return fmt.Errorf("stun binding to %s: %w", server, ErrExited)
		default:
		}
	}
}
