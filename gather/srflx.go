package gather

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// bindingRTO is the first retransmission timeout of a STUN Binding request;
// it doubles on every retry (RFC 8489 §6.2.1) until the gathering deadline.
const bindingRTO = 250 * time.Millisecond

// srflxJob asks STUN server s (number idx) over family f for our mapped
// address and makes it a server-reflexive candidate on a socket of its own.
func (a *Agent) srflxJob(ctx context.Context, s server, idx int, f netaddr.Family) jobResult {
	what := fmt.Sprintf("%s %s", s.raw, f)
	srv, err := a.resolveServer(ctx, s, f)
	if err != nil {
		return jobResult{err: err, what: what}
	}
	src, err := sourceFor(srv)
	if err != nil {
		return jobResult{err: err, what: what}
	}
	conn, err := net.ListenUDP(udpNetwork(f), net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		return jobResult{err: err, what: what}
	}
	base := unmapAP(conn.LocalAddr().(*net.UDPAddr).AddrPort())
	mapped, err := stunBinding(ctx, conn, srv)
	if err != nil {
		_ = conn.Close()
		return jobResult{err: err, what: what}
	}
	if mapped == base {
		_ = conn.Close()
		return jobResult{redundant: true, what: what}
	}
	cand, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
		Network:    "udp",
		Address:    mapped.Addr().String(),
		Port:       int(mapped.Port()),
		Component:  rtpComponent,
		Priority:   candidatePriority(typePrefSrflx, serverLocalPref("udp", netaddr.FamilyOf(mapped.Addr()), idx), rtpComponent),
		Foundation: foundation("srflx", base.Addr(), srv.Addr(), "udp"),
		RelAddr:    base.Addr().String(),
		RelPort:    int(base.Port()),
	})
	if err != nil {
		_ = conn.Close()
		return jobResult{err: err, what: what}
	}
	return jobResult{what: what, cand: &localCandidate{
		cand: cand, conn: conn, addr: mapped, family: netaddr.FamilyOf(mapped.Addr()),
		typ: ice.CandidateTypeServerReflexive, release: onceCloser(conn.Close),
	}}
}

// stunBinding sends a Binding request from conn to srv, retransmitting
// until ctx ends, and returns the XOR-MAPPED-ADDRESS of the answer.
func stunBinding(ctx context.Context, conn *net.UDPConn, srv netip.AddrPort) (netip.AddrPort, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1500)
	rto := bindingRTO
	for {
		if err := ctx.Err(); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun binding %s: %w", srv, err)
		}
		if _, err := conn.WriteToUDPAddrPort(req.Raw, srv); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun binding %s: %w", srv, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(rto))
		if ctx.Err() != nil { // AfterFunc may have run before the line above
			continue
		}
		rto *= 2
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit, or give up if ctx ended
				}
				return netip.AddrPort{}, fmt.Errorf("stun binding %s: %w", srv, err)
			}
			if unmapAP(from) != srv {
				continue
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			if res.Type.Class == stun.ClassErrorResponse {
				var code stun.ErrorCodeAttribute
				_ = code.GetFrom(res)
				return netip.AddrPort{}, fmt.Errorf("stun binding %s: error response %d %s", srv, code.Code, code.Reason)
			}
			var xma stun.XORMappedAddress
			if err := xma.GetFrom(res); err != nil {
				return netip.AddrPort{}, fmt.Errorf("stun binding %s: %w", srv, err)
			}
			addr, ok := netip.AddrFromSlice(xma.IP)
			if !ok {
				return netip.AddrPort{}, fmt.Errorf("stun binding %s: bad mapped address", srv)
			}
			return netip.AddrPortFrom(addr.Unmap(), uint16(xma.Port)), nil //nolint:gosec // 16-bit on the wire
		}
	}
}
