package gather

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// relayJob allocates a relayed address of family rf on TURN server s
// (number idx) and makes it a relayed candidate.
//
// pion/ice v4 gathers relayed candidates itself, but asks each TURN server
// only for the relayed family of the transport, never for the other one. So we allocate with pion/turn's client ourselves — over the
// family rf when the agent can reach the server over it, else over the
// other one — with rafConn in front of the client's socket so that the
// Allocate carries REQUESTED-ADDRESS-FAMILY for IPv4 too, and hand the
// allocation to pion/ice at Connect as a ready-made candidate
// (Agent.AddVirtualCandidate with the allocation as its packet conn).
func (a *Agent) relayJob(ctx context.Context, s server, idx int, rf netaddr.Family) jobResult {
	what := fmt.Sprintf("%s %s relay", s.raw, rf)
	// Same family first: a dual-stack agent need not cross families to
	// reach a same-family relay.
	type path struct {
		srv netip.AddrPort
		src netip.Addr
	}
	var paths []path
	var errs []error
	for _, tf := range []netaddr.Family{rf, rf.Other()} {
		if !slices.Contains(a.fams, tf) {
			continue
		}
		addr, err := a.resolveServer(ctx, s, tf)
		var src netip.Addr
		if err == nil {
			src, err = sourceFor(addr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, path{addr, src})
	}
	switch len(paths) {
	case 0:
		return jobResult{err: errors.Join(errs...), what: what}
	case 1:
		return a.allocate(ctx, s, idx, rf, paths[0].srv, paths[0].src)
	}
	// Happy Eyeballs (RFC 8305 §5) toward a dual-stack server: the
	// preferred family first, the other one after heDelay or as soon as
	// the first fails, the first allocation wins and the other is
	// cancelled (or released if it succeeded in the race). A dead IPv6
	// path to the server then costs heDelay, not the relayed candidate.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan jobResult, len(paths))
	firstFailed := make(chan struct{})
	for i, p := range paths {
		go func() {
			if i > 0 {
				t := time.NewTimer(heDelay)
				defer t.Stop()
				select {
				case <-ctx.Done():
					results <- jobResult{err: ctx.Err(), what: what}
					return
				case <-t.C:
				case <-firstFailed:
				}
			}
			r := a.allocate(ctx, s, idx, rf, p.srv, p.src)
			if i == 0 && r.cand == nil {
				close(firstFailed)
			}
			results <- r
		}()
	}
	var first jobResult
	for range paths {
		r := <-results
		if r.cand != nil && first.cand == nil {
			first = r
			cancel()
			continue
		}
		if r.cand != nil {
			_ = r.cand.release()
			continue
		}
		if first.cand == nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.what, r.err))
		}
	}
	if first.cand != nil {
		return first
	}
	return jobResult{err: errors.Join(errs...), what: what}
}

// heDelay is RFC 8305 §5's recommended Connection Attempt Delay.
const heDelay = 250 * time.Millisecond

// allocate makes one allocation of family rf on server s at srv, from
// local address src, and makes it a relayed candidate.
func (a *Agent) allocate(ctx context.Context, s server, idx int, rf netaddr.Family, srv netip.AddrPort, src netip.Addr) jobResult {
	return a.allocateFor(ctx, s, idx, rf, srv, src, rtpComponent)
}

// allocateFor is allocate for ICE component comp.
func (a *Agent) allocateFor(ctx context.Context, s server, idx int, rf netaddr.Family, srv netip.AddrPort, src netip.Addr, comp uint16) jobResult {
	proto := s.relayProtocol()
	tf := netaddr.FamilyOf(srv.Addr())
	what := fmt.Sprintf("%s %s relay over %s", s.raw, rf, tf)

	var base net.PacketConn
	switch proto {
	case "udp":
		c, err := net.ListenUDP(udpNetwork(tf), net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			return jobResult{err: err, what: what}
		}
		base = c
	default:
		var d net.Dialer
		c, err := d.DialContext(ctx, tcpNetwork(tf), srv.String())
		if err != nil {
			return jobResult{err: err, what: what}
		}
		if proto == "tls" {
			tc := a.tlsConfig(s)
			tlsConn := tls.Client(c, tc)
			if err := tlsConn.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return jobResult{err: fmt.Errorf("tls: %w", err), what: what}
			}
			c = tlsConn
		}
		base = turn.NewSTUNConn(c)
	}
	localBase := unmapAP(addrPortOf(base.LocalAddr()))
	raf := newRAFConn(base, rf, a.cfg.Username, a.cfg.Password)
	reqFam := turn.RequestedAddressFamilyIPv4
	if rf == netaddr.IPv6 {
		reqFam = turn.RequestedAddressFamilyIPv6
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr:         srv.String(),
		Username:               a.cfg.Username,
		Password:               a.cfg.Password,
		Conn:                   raf,
		RequestedAddressFamily: reqFam,
		LoggerFactory:          pionLogs(a.log),
	})
	if err != nil {
		_ = base.Close()
		return jobResult{err: err, what: what}
	}
	if err := client.Listen(); err != nil {
		client.Close()
		_ = base.Close()
		return jobResult{err: err, what: what}
	}
	closeClient := onceCloser(func() error {
		client.Close()
		return base.Close()
	})
	relayConn, err := client.AllocateWithContext(ctx)
	a.mu.Lock()
	a.stats.RAFAdded += int(raf.rewritten.Load()) //nolint:gosec // a handful
	a.mu.Unlock()
	if err != nil {
		_ = closeClient()
		return jobResult{err: fmt.Errorf("allocate: %w", err), what: what}
	}
	release := onceCloser(func() error {
		err := relayConn.Close()
		return errors.Join(err, closeClient())
	})
	relayed := unmapAP(addrPortOf(relayConn.LocalAddr()))
	if got := netaddr.FamilyOf(relayed.Addr()); got != rf {
		// The server ignored REQUESTED-ADDRESS-FAMILY. Keep the
		// candidate (it still works) but say so.
		a.log.Warn("TURN server allocated another family than requested", slog.String("server", s.raw), slog.String("requested", rf.String()), slog.String("got", got.String()))
	}
	rel := localBase
	if m, ok := raf.Mapped(); ok {
		rel = m
	}
	cand, err := ice.NewCandidateRelay(&ice.CandidateRelayConfig{
		Network:   "udp",
		Address:   relayed.Addr().String(),
		Port:      int(relayed.Port()),
		Component: comp,
		Priority:  candidatePriority(typePrefRelay, serverLocalPref(proto, netaddr.FamilyOf(relayed.Addr()), idx), comp),
		// RFC 8445 §5.1.1.1: a relayed candidate is its own base.
		Foundation:    foundation("relay", relayed.Addr(), srv.Addr(), proto),
		RelAddr:       rel.Addr().String(),
		RelPort:       int(rel.Port()),
		RelayProtocol: proto,
		// pion/ice closes the allocation itself (the candidate's conn);
		// the client and its socket are ours to close.
		OnClose: closeClient,
	})
	if err != nil {
		_ = release()
		return jobResult{err: err, what: what}
	}
	a.log.Debug("relayed candidate", slog.String("server", s.raw), slog.String("relayed", relayed.String()), slog.String("over", tf.String()), slog.Uint64("raf_rewritten", raf.rewritten.Load()))
	return jobResult{what: what, cand: &localCandidate{
		cand: cand, conn: relayConn, addr: relayed, family: netaddr.FamilyOf(relayed.Addr()),
		typ: ice.CandidateTypeRelay, relayProto: proto, release: release,
		// The same allocation path, for component 2 (rtcp.go).
		again: func(ctx context.Context) jobResult {
			return a.allocateFor(ctx, s, idx, rf, srv, src, rtcpComponent)
		},
	}}
}

func (a *Agent) tlsConfig(s server) *tls.Config {
	if a.cfg.TLSConfig != nil {
		c := a.cfg.TLSConfig.Clone()
		if c.ServerName == "" {
			c.ServerName = s.uri.Host
		}
		return c
	}
	return &tls.Config{ServerName: s.uri.Host, MinVersion: tls.VersionTLS12}
}
