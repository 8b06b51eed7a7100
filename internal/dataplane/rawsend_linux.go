//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSender sends client-to-peer datagrams of many allocations in one
// sendmmsg: a raw IP socket (IPPROTO_RAW, the headers written by us) can
// send from any allocation's relayed address and port, where a UDP socket
// sends only from its own. Each allocation keeps its own bound UDP socket,
// so its port stays reserved and the kernel answers for it as before; only
// the send leaves through the worker's raw socket. Without it every
// client datagram costs one sendto on its allocation's socket.
//
// One per worker and family: never shared, no lock. Needs CAP_NET_RAW;
// where the socket cannot be opened the worker sends as before.
type rawSender struct {
	fd  int // -1: not available
	n   int
	sys sysHeaders // one sendmmsg's headers, IdealBatchSize of them
	// What a datagram needs should the raw send refuse it (EMSGSIZE: it
	// needs fragmenting, which the UDP socket does): its allocation's
	// socket, the application data and the peer.
	relay   [IdealBatchSize]*Conn
	payload [IdealBatchSize][]byte
	peer    [IdealBatchSize]netip.AddrPort
	tos     [IdealBatchSize]uint8
	// pktinfo is one IP_PKTINFO / IPV6_PKTINFO control message per
	// datagram, naming its source address: a raw socket is bound to
	// nothing, and without it the kernel would route the datagram as if it
	// had no source, ignoring source-based policy routing (ip rule from
	// <relay IP>) that the allocation's own bound socket would follow.
	pktinfo []byte // IdealBatchSize x pktinfoSpace
}

// pktinfoSpace holds one control message with an in6_pktinfo (the larger
// of the two families' structures).
var pktinfoSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// putPktinfo writes datagram i's source-address control message and points
// its header at it.
func (s *rawSender) putPktinfo(i int, src netip.Addr) {
	b := s.pktinfo[i*pktinfoSpace : (i+1)*pktinfoSpace]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	if src.Is4() {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		(*unix.Inet4Pktinfo)(data).Spec_dst = src.As4()
	} else {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		(*unix.Inet6Pktinfo)(data).Addr = src.As16()
	}
	hdr := &s.sys.hdrs[i].Hdr
	hdr.Control = &b[0]
	hdr.SetControllen(int(h.Len))
}

// rawSockBuf is the send buffer asked for a raw socket: one worker's
// client-to-peer traffic for all its allocations leaves through it.
const rawSockBuf = 4 << 20

// openRawSenders opens the worker's raw sockets when the plane is set to
// use them; a refusal (no CAP_NET_RAW) leaves that family on the UDP
// sockets and is an error only in RawSendOn mode.
func (w *worker) openRawSenders() error {
	w.raw4.fd, w.raw6.fd = -1, -1
	if w.p.cfg.RawSend == RawSendOff {
		return nil
	}
	var failed []string
	var firstErr error
	for _, fam := range []struct {
		s      *rawSender
		domain int
		name   string
	}{{&w.raw4, unix.AF_INET, "IPv4"}, {&w.raw6, unix.AF_INET6, "IPv6"}} {
		fd, err := unix.Socket(fam.domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if errors.Is(err, unix.EAFNOSUPPORT) {
			continue // the family is off in this kernel: no relay sockets of it either
		}
		if err != nil {
			failed = append(failed, fam.name)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rawSockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, rawSockBuf)
		}
		fam.s.fd = fd
		fam.s.sys.init(IdealBatchSize)
		fam.s.pktinfo = make([]byte, IdealBatchSize*pktinfoSpace)
	}
	if firstErr != nil {
		err := fmt.Errorf("%s raw socket: %w", strings.Join(failed, " and "), firstErr)
		if w.p.cfg.RawSend == RawSendOn {
			return fmt.Errorf("dataplane: worker %d: %w", w.id, err)
		}
		if w.id == 0 {
			w.p.log.Info("dataplane: raw sockets unavailable, client-to-peer datagrams are sent one per syscall", slog.Any("error", err))
		}
	}
	return nil
}

// RawSending reports whether the workers send client-to-peer datagrams on
// raw sockets (Config.RawSend, and the process allowed to open them).
func (p *Plane) RawSending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.workers) > 0 && (p.workers[0].raw4.fd >= 0 || p.workers[0].raw6.fd >= 0)
}

func (w *worker) closeRawSenders() {
	for _, s := range []*rawSender{&w.raw4, &w.raw6} {
		if s.fd >= 0 {
			_ = unix.Close(s.fd)
			s.fd = -1
		}
	}
}

// sendRaw queues m's application data (payload, inside m's slot) for peer
// on relay's raw sender, writing the IP and UDP headers in front of it. It
// returns false when the datagram must leave on relay's own socket: no raw
// socket, a socket bound to a wildcard address, or no headroom.
func (w *worker) sendRaw(relay *Conn, m *Message, payload []byte, peer netip.AddrPort, tos uint8) bool {
	src := relay.local
	sa := src.Addr()
	var s *rawSender
	switch {
	case sa.Is4() && peer.Addr().Is4():
		s = &w.raw4
	case sa.Is6() && !sa.Is4In6() && peer.Addr().Is6() && !peer.Addr().Is4In6():
		s = &w.raw6
	default:
		return false
	}
	if s.fd < 0 || relay.fd < 0 || sa.IsUnspecified() || relay.v6 != sa.Is6() {
		return false
	}
	off := cap(m.mem) - cap(payload) // payload's offset in its slot
	hl := rawHeaderLen(sa)
	if off < hl || off+len(payload) > len(m.mem) || len(payload) > 0 && &m.mem[off] != &payload[0] {
		return false // not inside the slot after all, or no room for the headers
	}
	if s.n == len(s.sys.hdrs) {
		w.flushRaw(s)
	}
	pkt := m.mem[off-hl : off+len(payload)]
	ttl := w.p.ttl4
	if sa.Is6() {
		ttl = w.p.hop6
	}
	putRawHeaders(pkt, src, peer, tos, ttl)
	i := s.n
	// The port of a raw socket's destination is 0: the UDP header in pkt
	// carries it (an IPv6 raw socket reads a port as a protocol number).
	s.sys.prepare(i, pkt, PutSockaddr(&s.sys.names[i], netip.AddrPortFrom(peer.Addr(), 0), sa.Is6()))
	s.putPktinfo(i, sa)
	s.relay[i], s.payload[i], s.peer[i], s.tos[i] = relay, payload, peer, tos
	s.n++
	return true
}

// flushRaws sends what both raw senders hold; it runs before the slots
// they point into are reused.
func (w *worker) flushRaws() {
	if w.raw4.n > 0 {
		w.flushRaw(&w.raw4)
	}
	if w.raw6.n > 0 {
		w.flushRaw(&w.raw6)
	}
}

// flushRaw sends s's datagrams in one sendmmsg (more only after an error).
// A datagram the raw socket refuses as too big for the path goes out on its
// allocation's own socket, which fragments it as before; other refusals
// are dropped and counted.
func (w *worker) flushRaw(s *rawSender) {
	n := s.n
	s.n = 0
	for i := 0; i < n; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.sys.hdrs[i])), uintptr(n-i), unix.MSG_DONTWAIT, 0, 0)
		w.ctr[ctrRawWrites]++
		switch errno {
		case 0:
			i += int(r)
		case unix.EINTR:
		case unix.EMSGSIZE:
			s.relay[i].setMark(s.tos[i])
			if err := sendTo(s.relay[i].fd, s.payload[i], s.peer[i], s.relay[i].v6, unix.MSG_DONTWAIT); err != nil {
				w.drop(DropSend, 1)
			}
			i++
		case unix.EAGAIN:
			w.drop(DropSend, n-i)
			i = n
		default:
			w.drop(DropSend, 1)
			i++
		}
	}
	for i := range n {
		s.relay[i], s.payload[i] = nil, nil
	}
}
