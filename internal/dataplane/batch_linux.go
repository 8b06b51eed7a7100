//go:build linux

package dataplane

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysHeaders are the kernel-side descriptions of a batch for
// recvmmsg(2)/sendmmsg(2): one mmsghdr, one iovec and one sockaddr buffer
// per slot, allocated once. golang.org/x/net's ipv4/ipv6 ReadBatch would do
// the same syscalls, but it returns each source address as a fresh
// *net.UDPAddr (two heap allocations per datagram), so the hot path fills
// these headers itself and decodes the sockaddr straight into a
// netip.AddrPort.
type sysHeaders struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // tosCtrlSpace per slot: received TOS / Traffic Class
}

func (h *sysHeaders) init(n int) {
	h.hdrs = make([]unix.Mmsghdr, n)
	h.iovs = make([]unix.Iovec, n)
	h.names = make([]unix.RawSockaddrInet6, n)
	h.ctrl = make([]byte, n*tosCtrlSpace)
}

// fdBatch is Batch on a raw, non-netpoller socket descriptor. Every call
// passes MSG_DONTWAIT, so the descriptor itself may stay in blocking mode
// (which keeps pion's control-plane WriteTo simple), and the calls are raw
// syscalls: they never block, so the scheduler need not be told (saving
// entersyscall/exitsyscall per call).
type fdBatch struct {
	fd int
	v6 bool // AF_INET6 socket: destinations are written as sockaddr_in6
	// recvTOS: the socket reports each datagram's TOS / Traffic Class
	// (enableRecvTOS); reads collect it into Message.TOS.
	recvTOS bool
	// sendTOS: writes give each datagram with a Message.TOS its own
	// IP_TOS / IPV6_TCLASS control message (listeners: one socket sends
	// to many clients, each with its peer's marking).
	sendTOS bool
}

// prepare points header i at buf and at name slot i, namelen bytes of it
// (the whole slot for a receive, the packed destination for a send).
func (h *sysHeaders) prepare(i int, buf []byte, namelen uint32) {
	h.iovs[i].Base = unsafe.SliceData(buf)
	h.iovs[i].SetLen(len(buf))
	hd := &h.hdrs[i]
	hd.Hdr.Name = (*byte)(unsafe.Pointer(&h.names[i]))
	hd.Hdr.Namelen = namelen
	hd.Hdr.Iov = &h.iovs[i]
	hd.Hdr.SetIovlen(1)
	hd.Hdr.Control = nil
	hd.Hdr.SetControllen(0)
	hd.Hdr.Flags = 0
	hd.Len = 0
}

func (b *fdBatch) ReadBatch(ms *Msgs, lo, hi int) (int, error) {
	if hi <= lo {
		return 0, nil
	}
	h := &ms.sys
	for i := lo; i < hi; i++ {
		h.prepare(i, ms.M[i].Buf, unix.SizeofSockaddrInet6)
		if b.recvTOS {
			h.hdrs[i].Hdr.Control = &h.ctrl[i*tosCtrlSpace]
			h.hdrs[i].Hdr.SetControllen(tosCtrlSpace)
		}
	}
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(b.fd),
			uintptr(unsafe.Pointer(&h.hdrs[lo])), uintptr(hi-lo), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, errno
		}
		n := int(r)
		for i := lo; i < lo+n; i++ {
			m := &ms.M[i]
			m.N = int(h.hdrs[i].Len)
			m.Trunc = h.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0
			m.Addr = AddrPortFromSockaddr(&h.names[i])
			m.TOS = 0
			if b.recvTOS {
				m.TOS = parseTOS(h.ctrl[i*tosCtrlSpace : i*tosCtrlSpace+int(h.hdrs[i].Hdr.Controllen)])
			}
		}
		return n, nil
	}
}

func (b *fdBatch) WriteBatch(ms *Msgs, lo, hi int) (int, error) {
	h := &ms.sys
	// Pack every slot; a destination the socket cannot reach (wrong family)
	// gets a zero-length name, so the kernel rejects that one slot and the
	// loop below skips it.
	marked := false
	for i := lo; i < hi; i++ {
		m := &ms.M[i]
		h.prepare(i, m.Buf, PutSockaddr(&h.names[i], m.Addr, b.v6))
		if b.sendTOS && m.TOS != 0 {
			h.putTOS(i, m.TOS, b.v6)
			marked = true
		}
	}
	if hi-lo == 1 && !marked {
		// One datagram (the usual client-to-peer case: one per relay
		// socket): sendto skips sendmmsg's per-message header copies.
		return b.sendOne(&ms.M[lo], &h.names[lo], h.hdrs[lo].Hdr.Namelen)
	}
	sent := 0
	var lastErr error
	for i := lo; i < hi; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(b.fd),
			uintptr(unsafe.Pointer(&h.hdrs[i])), uintptr(hi-i), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			sent += int(r)
			i += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			// Send buffer full: what is left is dropped by the caller.
			return sent, nil
		default:
			// The first remaining slot failed (e.g. an unreachable
			// destination): skip it and go on with the rest.
			lastErr = errno
			i++
		}
	}
	return sent, lastErr
}

func (b *fdBatch) sendOne(m *Message, sa *unix.RawSockaddrInet6, salen uint32) (int, error) {
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(b.fd),
			uintptr(unsafe.Pointer(unsafe.SliceData(m.Buf))), uintptr(len(m.Buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(sa)), uintptr(salen))
		switch errno {
		case 0:
			return 1, nil
		case unix.EINTR:
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, errno
		}
	}
}

// AddrPortFromSockaddr decodes a sockaddr_in or sockaddr_in6 (as recvmsg(2)
// wrote it into sa) without allocating. IPv4-mapped IPv6 sources are
// unmapped, so that one peer has one key whichever socket family saw it. The
// bench's generator reads its peer sockets the same way.
func AddrPortFromSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// PutSockaddr encodes ap for a socket of the given family (v6: AF_INET6) and
// returns the sockaddr length, or 0 when the socket cannot send to ap. An
// AF_INET6 socket reaches IPv4 destinations through their IPv4-mapped form.
// The bench's generator sends its client legs' datagrams the same way.
func PutSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	port := ap.Port()
	if v6 {
		if !a.IsValid() {
			return 0
		}
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet6
	}
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet4
}
