//go:build linux

package udpbatch

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RawSender sends UDP datagrams from any source address and port in one
// sendmmsg: a raw IP socket (IPPROTO_RAW, the headers written with
// PutRawHeaders) can send from any relayed address, where a UDP socket
// sends only from its own. One goroutine owns it; no lock.
type RawSender struct {
	fd  int
	v6  bool
	n   int
	sys sysHeaders
	// pktinfo is one IP_PKTINFO / IPV6_PKTINFO control message per
	// datagram, naming its source address: a raw socket is bound to
	// nothing, and without it the kernel would route the datagram as if it
	// had no source, ignoring source-based policy routing (ip rule from
	// <relay IP>) that a bound UDP socket would follow.
	pktinfo []byte
}

// pktinfoSpace holds one control message with an in6_pktinfo (the larger
// of the two families' structures).
var pktinfoSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// OpenRawSender opens a raw socket of one family (needs CAP_NET_RAW) that
// queues up to n datagrams per sendmmsg, asking for sndbuf bytes of send
// buffer. ErrFamilyUnavailable means the kernel has that family off.
func OpenRawSender(v6 bool, n, sndbuf int) (*RawSender, error) {
	domain := unix.AF_INET
	if v6 {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return nil, ErrFamilyUnavailable
	}
	if err != nil {
		return nil, err
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
	}
	s := &RawSender{fd: fd, v6: v6, pktinfo: make([]byte, n*pktinfoSpace)}
	s.sys.init(n)
	return s, nil
}

// Len is the number of queued datagrams; Cap how many fit.
func (s *RawSender) Len() int { return s.n }

// Cap is how many datagrams one Flush sends at most.
func (s *RawSender) Cap() int { return len(s.sys.hdrs) }

// Queue adds pkt, a whole IP datagram (PutRawHeaders) from src to dst, and
// returns its index for Flush's refused callback. The caller flushes first
// when Len == Cap. pkt must stay untouched until Flush.
func (s *RawSender) Queue(pkt []byte, src, dst netip.Addr) int {
	i := s.n
	// The port of a raw socket's destination is 0: the UDP header in pkt
	// carries it (an IPv6 raw socket reads a port as a protocol number).
	s.sys.prepare(i, pkt, putSockaddr(&s.sys.names[i], netip.AddrPortFrom(dst, 0), s.v6), nil)
	s.putPktinfo(i, src)
	s.n++
	return i
}

// putPktinfo writes datagram i's source-address control message and points
// its header at it.
func (s *RawSender) putPktinfo(i int, src netip.Addr) {
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

// Flush sends the queued datagrams in one non-blocking sendmmsg (more only
// after a refusal) and returns how many sendmmsg calls it made. Each
// datagram the kernel does not take is reported to refused with its Queue
// index: tooBig when it needs fragmenting (EMSGSIZE; the caller may send it
// on a UDP socket, which fragments), else dropped (a full buffer refuses
// every datagram left).
func (s *RawSender) Flush(refused func(i int, tooBig bool)) (calls int) {
	n := s.n
	s.n = 0
	for i := 0; i < n; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.sys.hdrs[i])), uintptr(n-i), unix.MSG_DONTWAIT, 0, 0)
		calls++
		switch errno {
		case 0:
			i += int(r)
		case unix.EINTR:
		case unix.EMSGSIZE:
			refused(i, true)
			i++
		case unix.EAGAIN:
			for ; i < n; i++ {
				refused(i, false)
			}
		default:
			refused(i, false)
			i++
		}
	}
	return calls
}

// Close closes the raw socket.
func (s *RawSender) Close() error { return unix.Close(s.fd) }
