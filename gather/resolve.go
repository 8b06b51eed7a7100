package gather

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/siplocate"
)

// resolveServer returns the address of family f at which to reach server s
// over the transport the agent will use (s.relayProtocol for TURN, UDP for
// STUN). The URL is located with siplocate — S-NAPTR, SRV, then A/AAAA
// (RFC 5928 for turn:, RFC 8489 §8 for stun:) — so "turn:example.org"
// without a port finds _turn._udp.example.org and the SRV target's AAAA,
// which an IPv6-only agent needs. The first target of that family in
// siplocate's order (RFC 2782, RFC 6724) is used.
//
// When siplocate finds nothing, the system resolver is asked as before
// (/etc/hosts, nsswitch), with the URL's port.
func (a *Agent) resolveServer(ctx context.Context, s server, f netaddr.Family) (netip.AddrPort, error) {
	want := siplocate.UDP
	if s.isTURN() {
		switch s.relayProtocol() {
		case "tcp":
			want = siplocate.TCP
		case "tls":
			want = siplocate.TLS
		}
	}
	r := a.cfg.Locator
	if r == nil {
		r = &siplocate.Resolver{}
	}
	targets, err := r.Locate(ctx, s.raw)
	if err == nil {
		for _, t := range targets {
			if t.Transport == want && netaddr.FamilyOf(t.AddrPort.Addr()) == f {
				return t.AddrPort, nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("%w: %s has no %s %s address", errNoRoute, s.raw, f, want)
	}
	if ctx.Err() != nil || errors.Is(err, siplocate.ErrUnavailable) {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", s.raw, err)
	}
	return systemResolve(ctx, s, f, err)
}

// systemResolve is the lookup gather did before siplocate: the host's
// addresses from the system resolver at the URL's (or default) port.
func systemResolve(ctx context.Context, s server, f netaddr.Family, locateErr error) (netip.AddrPort, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", s.uri.Host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", s.uri.Host, errors.Join(locateErr, err))
	}
	for _, a := range addrs {
		if a = a.Unmap(); netaddr.FamilyOf(a) == f {
			return netip.AddrPortFrom(a, uint16(s.uri.Port)), nil //nolint:gosec // ParseURI checked the port
		}
	}
	return netip.AddrPort{}, fmt.Errorf("%w: %s has no %s address", errNoRoute, s.uri.Host, f)
}
