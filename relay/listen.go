//go:build linux

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// This file is the single place where the relay creates sockets: the TURN
// listeners (listenUDP, listenTCP) and the per-allocation relay sockets
// (listenRelayUDP). The data plane (docs/dataplane.md) swaps what pion reads and
// writes through the Forwarder (forwarder.go), not here.

// sockBufs are the socket buffer sizes asked of the kernel.
type sockBufs struct {
	recv, send int
	// mark is the TOS / Traffic Class octet set on UDP sockets (a forced
	// dscp, see forcedMark); 0 leaves the kernel's default.
	mark int
}

// forcedMark is the TOS octet of a forced dscp (config dscp 1..63): set on
// every listener and relay socket, it marks what pion sends and the peer to
// client direction too. -1 (copy the client's) and 0 set nothing; the data
// plane sets the client's marking per allocation socket (internal/dataplane
// tos.go).
func forcedMark(dscp int) int {
	if dscp <= 0 {
		return 0
	}
	return dscp << 2
}

// bufResult is what the kernel granted (Linux reports twice the request,
// capped by net.core.rmem_max unless SO_RCVBUFFORCE worked).
type bufResult struct{ recv, send int }

func udpNetwork(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

func tcpNetwork(a netip.Addr) string {
	if a.Is4() {
		return "tcp4"
	}
	return "tcp6"
}

// setBuffers raises SO_RCVBUF/SO_SNDBUF, first with the *FORCE variants
// (which pass net.core.[rw]mem_max when we have CAP_NET_ADMIN) and falls back
// to the plain options. It returns the sizes the kernel reports.
func setBuffers(fd int, b sockBufs) bufResult {
	if b.recv > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, b.recv) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, b.recv)
		}
	}
	if b.send > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, b.send) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, b.send)
		}
	}
	var r bufResult
	r.recv, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	r.send, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	return r
}

// socketControl returns a net.ListenConfig Control function that sets the
// options every relay socket needs before bind.
func socketControl(v6only, reusePort bool, bufs sockBufs, granted *bufResult) func(string, string, syscall.RawConn) error {
	return func(network, _ string, rc syscall.RawConn) error {
		var opErr error
		err := rc.Control(func(fd uintptr) {
			s := int(fd)
			if v6only {
				// A wildcard [::] socket must not take IPv4-mapped traffic:
				// the client's family has to be knowable from the socket.
				if opErr = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); opErr != nil {
					opErr = fmt.Errorf("IPV6_V6ONLY: %w", opErr)
					return
				}
			}
			if reusePort {
				if opErr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); opErr != nil {
					opErr = fmt.Errorf("SO_REUSEPORT: %w", opErr)
					return
				}
			}
			if bufs.mark != 0 && network != "tcp6" {
				// An IPv4 TCP listener's IP_TOS is inherited by the
				// connections it accepts; IPv6 TCP: markedTCPListener.
				if network == "udp6" {
					_ = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, bufs.mark)
				} else {
					_ = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_TOS, bufs.mark)
				}
			}
			if network == "udp4" || network == "udp6" {
				r := setBuffers(s, bufs)
				if granted != nil {
					*granted = r
				}
			}
		})
		if err != nil {
			return err
		}
		return opErr
	}
}

// listenUDP binds n UDP sockets on ap with SO_REUSEPORT, so the kernel
// spreads clients over them by 5-tuple hash and each is drained by its own
// goroutine (one pion read loop per socket). With port 0 the kernel picks
// one free port and every socket binds it.
func listenUDP(ap netip.AddrPort, n int, bufs sockBufs) ([]*net.UDPConn, bufResult, error) {
	// SO_REUSEPORT lets any socket of the same user join the group, even
	// another program's. Bind once without it first: that fails if the port
	// is taken, and with port 0 it makes the kernel pick a port no one
	// holds. The short gap before the group binds is the price.
	plc := net.ListenConfig{Control: socketControl(ap.Addr().Is6(), false, sockBufs{}, nil)}
	probe, err := plc.ListenPacket(context.Background(), udpNetwork(ap.Addr()), ap.String())
	if err != nil {
		return nil, bufResult{}, err // a *net.OpError naming udp and the address
	}
	port := probe.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	_ = probe.Close()

	var granted bufResult
	lc := net.ListenConfig{Control: socketControl(ap.Addr().Is6(), true, bufs, &granted)}
	conns := make([]*net.UDPConn, 0, n)
	for i := 0; i < n; i++ {
		addr := netip.AddrPortFrom(ap.Addr(), port)
		pc, err := lc.ListenPacket(context.Background(), udpNetwork(ap.Addr()), addr.String())
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, granted, err
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	return conns, granted, nil
}

// listenTCP binds one TCP listener on ap (IPv6-only for IPv6 addresses).
// mark is a forced TOS octet (forcedMark), 0 for none.
func listenTCP(ap netip.AddrPort, mark int) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: socketControl(ap.Addr().Is6(), false, sockBufs{mark: mark}, nil)}
	l, err := lc.Listen(context.Background(), tcpNetwork(ap.Addr()), ap.String())
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// listenRelayUDP binds one relay socket for an allocation. It is exclusive
// (no SO_REUSEPORT): a relayed transport address belongs to one allocation.
func listenRelayUDP(ip netip.Addr, port int, bufs sockBufs) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: socketControl(false, false, bufs, nil)}
	addr := netip.AddrPortFrom(ip, uint16(port)) //nolint:gosec // port comes from the validated pool range
	pc, err := lc.ListenPacket(context.Background(), udpNetwork(ip), addr.String())
	if err != nil {
		return nil, fmt.Errorf("relay: bind relay %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// markedTCPListener sets IPV6_TCLASS on each connection it accepts: Linux
// refuses the option on an IPv6 TCP socket before it is connected
// (EOPNOTSUPP), while an IPv4 listener's IP_TOS is simply inherited.
type markedTCPListener struct {
	*net.TCPListener
	mark int
}

// markTCP returns l, wrapped when a forced mark must be set per IPv6
// connection.
func markTCP(l *net.TCPListener, mark int) net.Listener {
	if mark == 0 || !l.Addr().(*net.TCPAddr).AddrPort().Addr().Is6() {
		return l
	}
	return markedTCPListener{TCPListener: l, mark: mark}
}

// Accept implements net.Listener.
func (l markedTCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, l.mark)
		})
	}
	return c, nil
}

// isFamilyUnavailable reports a bind error caused by the host lacking the
// address family (IPv6 disabled) or the address.
func isFamilyUnavailable(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EPROTONOSUPPORT)
}

// listenError names the config field of a failed bind. An address this
// host does not have is a configuration error (ErrConfig, exit code 2); a
// port someone else holds, or one the process may not bind, is a runtime
// failure (exit code 1) — the same for the TURN, TLS and metrics ports.
func listenError(field, addr string, err error) error {
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
		return fieldErr(field, "%s is not an address of this host: %v", addr, err)
	}
	return fmt.Errorf("relay: %s: %w", field, err)
}

// isListenIP reports whether ip is one of the specific listen addresses.
func (s *Server) isListenIP(ip netip.Addr) bool {
	for _, ap := range s.res.listen {
		if ap.Addr() == ip {
			return true
		}
	}
	return false
}

// bindListeners creates every listener socket (listen.go) and hands it to
// pion behind the request gate. It is the one place listeners reach pion.
func (s *Server) bindListeners(sc *turn.ServerConfig, bufs sockBufs) error {
	n := s.socketsPerAddress()
	var granted bufResult
	for _, ap := range s.res.listen {
		conns, tl, g, err := listenPair(ap, n, bufs)
		if err != nil {
			if ap.Addr().IsUnspecified() && isFamilyUnavailable(err) && len(s.res.listen) > 1 {
				s.log.Warn("address family unavailable on this host; skipping listener", slog.Any("error", err), slog.String("listen", ap.String()))
				continue
			}
			return listenError("listen", ap.String(), err)
		}
		granted = g
		s.udp = append(s.udp, conns...)
		bound := netip.AddrPortFrom(ap.Addr(), conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port())
		s.listenAddrs = append(s.listenAddrs, bound)
		for _, c := range conns {
			s.readers.Add(1)
			sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
				PacketConn:            &gatedPacketConn{PacketConn: s.fwd.Listener(c), gate: s.gate, done: s.readers.Done},
				RelayAddressGenerator: s.gen,
				PermissionHandler:     s.permit,
			})
		}
		s.addStreamListener(sc, markTCP(tl, bufs.mark))
	}
	if len(s.udp) == 0 {
		return fieldErr("listen", "no listener could be bound")
	}
	s.metrics.socketBuffer.WithLabelValues("recv").Set(float64(granted.recv))
	s.metrics.socketBuffer.WithLabelValues("send").Set(float64(granted.send))
	if bufs.recv > 0 && granted.recv < bufs.recv {
		s.log.Warn("kernel granted a smaller receive buffer (raise net.core.rmem_max or run with CAP_NET_ADMIN)", slog.Int("asked", bufs.recv), slog.Int("granted", granted.recv))
	} else {
		s.log.Info("socket buffers", slog.Int("recv_buffer", granted.recv), slog.Int("send_buffer", granted.send))
	}

	if s.cfg.TLSCert != "" {
		cert, notAfter, err := loadCert(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fieldErr("tls_cert", "%v", err)
		}
		s.installCert(cert, notAfter, time.Now())
		tc := &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
		for _, ap := range s.res.tlsListen {
			tl, err := listenTCP(ap, forcedMark(s.cfg.DSCP))
			if err != nil {
				if ap.Addr().IsUnspecified() && isFamilyUnavailable(err) {
					s.log.Warn("address family unavailable; skipping TLS listener", slog.Any("error", err), slog.String("tls_listen", ap.String()))
					continue
				}
				return listenError("tls_listen", ap.String(), err)
			}
			s.listenAddrs = append(s.listenAddrs, netip.AddrPortFrom(ap.Addr(), uint16(tl.Addr().(*net.TCPAddr).Port))) //nolint:gosec // a port
			s.addStreamListener(sc, tls.NewListener(markTCP(tl, forcedMark(s.cfg.DSCP)), tc))
		}
	}
	return nil
}

// listenPair binds the UDP sockets and the TCP listener of one listen
// address on the same port. With port 0 the kernel picks the UDP port, which
// may be taken for TCP: then it tries another, a few times.
func listenPair(ap netip.AddrPort, n int, bufs sockBufs) ([]*net.UDPConn, *net.TCPListener, bufResult, error) {
	const tries = 8
	var lastErr error
	for try := 0; try < tries; try++ {
		conns, g, err := listenUDP(ap, n, bufs)
		if err != nil {
			return nil, nil, g, err
		}
		port := conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port()
		tl, err := listenTCP(netip.AddrPortFrom(ap.Addr(), port), bufs.mark)
		if err == nil {
			return conns, tl, g, nil
		}
		for _, c := range conns {
			_ = c.Close()
		}
		lastErr = err
		if ap.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, bufResult{}, lastErr
}

func (s *Server) addStreamListener(sc *turn.ServerConfig, l net.Listener) {
	gl := &gatedListener{Listener: l, gate: s.gate, conns: map[*gatedStreamConn]struct{}{}}
	s.listeners = append(s.listeners, gl)
	sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
		Listener:              gl,
		RelayAddressGenerator: s.gen,
		PermissionHandler:     s.permit,
	})
}
