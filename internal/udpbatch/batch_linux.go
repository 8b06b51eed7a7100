//go:build linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysHeaders are the kernel-side descriptions of a batch for
// recvmmsg(2)/sendmmsg(2): one mmsghdr, one iovec and one sockaddr buffer
// per slot, allocated once.
type sysHeaders struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // tosCtrlSpace per slot: a TOS / Traffic Class message
}

func (h *sysHeaders) init(n int) {
	h.hdrs = make([]unix.Mmsghdr, n)
	h.iovs = make([]unix.Iovec, n)
	h.names = make([]unix.RawSockaddrInet6, n)
	h.ctrl = make([]byte, n*tosCtrlSpace)
}

// prepare points header i at buf, at name slot i (namelen bytes of it: the
// whole slot for a receive, the packed destination for a send) and at oob.
func (h *sysHeaders) prepare(i int, buf []byte, namelen uint32, oob []byte) {
	h.iovs[i].Base = unsafe.SliceData(buf)
	h.iovs[i].SetLen(len(buf))
	hd := &h.hdrs[i]
	hd.Hdr.Name = (*byte)(unsafe.Pointer(&h.names[i]))
	hd.Hdr.Namelen = namelen
	hd.Hdr.Iov = &h.iovs[i]
	hd.Hdr.SetIovlen(1)
	hd.Hdr.Control = unsafe.SliceData(oob)
	hd.Hdr.SetControllen(len(oob))
	hd.Hdr.Flags = 0
	hd.Len = 0
}

// Recv is one non-blocking recvmmsg on fd into ms.M[lo:hi]; it returns how
// many datagrams arrived, (0, nil) when none were queued. It is a raw
// syscall: it never blocks, so the scheduler need not be told (saving
// entersyscall/exitsyscall per call).
func Recv(fd int, ms *Msgs, lo, hi int) (int, error) { return recv(fd, ms, lo, hi, false) }

// recv is Recv, with tos collecting each datagram's TOS / Traffic Class
// (instead of Message.OOB).
func recv(fd int, ms *Msgs, lo, hi int, tos bool) (int, error) {
	if hi <= lo {
		return 0, nil
	}
	h := &ms.sys
	for i := lo; i < hi; i++ {
		oob := ms.M[i].OOB
		if tos {
			oob = h.ctrl[i*tosCtrlSpace : (i+1)*tosCtrlSpace]
		}
		h.prepare(i, ms.M[i].Buf, unix.SizeofSockaddrInet6, oob)
	}
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd),
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
			m.NOOB = int(h.hdrs[i].Hdr.Controllen)
			m.Addr = addrPortFrom(&h.names[i])
			m.TOS = 0
			if tos {
				m.TOS = parseTOS(h.ctrl[i*tosCtrlSpace : i*tosCtrlSpace+m.NOOB])
				m.NOOB = 0
			}
		}
		return n, nil
	}
}

// Send sends ms.M[lo:hi] on fd (an AF_INET6 socket when v6) with
// non-blocking sendmmsg, or sendto for one datagram, and returns how many
// the kernel accepted. A full send buffer ends the batch without an error;
// a slot the kernel refuses (an unreachable destination, another family)
// is skipped and its error returned after the rest went out.
func Send(fd int, v6 bool, ms *Msgs, lo, hi int) (int, error) { return send(fd, v6, ms, lo, hi, false) }

// send is Send, with tos giving each datagram with a Message.TOS its own
// marking.
func send(fd int, v6 bool, ms *Msgs, lo, hi int, tos bool) (int, error) {
	h := &ms.sys
	// Pack every slot; a destination the socket cannot reach (wrong family)
	// gets a zero-length name, so the kernel rejects that one slot.
	marked := false
	for i := lo; i < hi; i++ {
		m := &ms.M[i]
		h.prepare(i, m.Buf, putSockaddr(&h.names[i], m.Addr, v6), nil)
		if tos && m.TOS != 0 {
			h.putTOS(i, m.TOS, v6)
			marked = true
		}
	}
	if hi-lo == 1 && !marked {
		// One datagram (the usual client-to-peer case: one per relay
		// socket): sendto skips sendmmsg's per-message header copies.
		err := sendto(fd, ms.M[lo].Buf, &h.names[lo], h.hdrs[lo].Hdr.Namelen, unix.MSG_DONTWAIT)
		switch err {
		case nil:
			return 1, nil
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
	sent := 0
	var lastErr error
	for i := lo; i < hi; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd),
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
			// The first remaining slot failed: skip it, go on with the rest.
			lastErr = errno
			i++
		}
	}
	return sent, lastErr
}

// sendto is one raw sendto, retried on EINTR; it returns the errno or nil.
func sendto(fd int, b []byte, sa *unix.RawSockaddrInet6, salen uint32, flags int) error {
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd),
			uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			uintptr(flags), uintptr(unsafe.Pointer(sa)), uintptr(salen))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
		default:
			return errno
		}
	}
}

// Sockaddr is a destination encoded once for repeated raw sends (SendTo).
type Sockaddr struct {
	raw unix.RawSockaddrInet6
	n   uint32
}

// Set encodes ap for a socket of the given family (v6: AF_INET6) and
// reports whether that socket can send to it. An AF_INET6 socket reaches
// IPv4 destinations through their IPv4-mapped form.
func (s *Sockaddr) Set(ap netip.AddrPort, v6 bool) bool {
	s.n = putSockaddr(&s.raw, ap, v6)
	return s.n != 0
}

// AddrPort decodes the address (IPv4-mapped IPv6 unmapped).
func (s *Sockaddr) AddrPort() netip.AddrPort { return addrPortFrom(&s.raw) }

// SendTo sends b to sa on fd with one non-blocking sendto (a raw syscall:
// the net package's WriteTo costs a fifth more per packet in fd locking and
// poller bookkeeping). A full send buffer is an error (EAGAIN), not a wait.
func SendTo(fd int, b []byte, sa *Sockaddr) error {
	return sendto(fd, b, &sa.raw, sa.n, unix.MSG_DONTWAIT)
}

// WriteTo sends one datagram on fd (an AF_INET6 socket when v6): a
// control-plane one (blocking if the descriptor does), or with dontWait one
// a loop must not wait for. It is retried on EINTR.
func WriteTo(fd int, p []byte, to netip.AddrPort, v6, dontWait bool) error {
	var sa unix.RawSockaddrInet6
	n := putSockaddr(&sa, to, v6)
	if n == 0 {
		return fmt.Errorf("udpbatch: send to %v from an IPv4 socket: %w", to, errFamily)
	}
	flags := 0
	if dontWait {
		flags = unix.MSG_DONTWAIT
	}
	return sendto(fd, p, &sa, n, flags)
}

var errFamily = errors.New("address family mismatch")

// addrPortFrom decodes a sockaddr_in or sockaddr_in6 (as recvmsg(2) wrote
// it into sa) without allocating. IPv4-mapped IPv6 sources are unmapped, so
// that one peer has one key whichever socket family saw it.
func addrPortFrom(sa *unix.RawSockaddrInet6) netip.AddrPort {
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

// putSockaddr encodes ap for a socket of the given family (v6: AF_INET6)
// and returns the sockaddr length, or 0 when the socket cannot send to ap.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
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

// FD returns the descriptor of a socket without taking it from the net
// package (it stays in the netpoller, non-blocking); for Recv and SendTo
// alongside the net package's own reads.
func FD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Adopt takes the descriptor of a UDP socket out of the net package:
// duplicate it, close the original (which removes it from Go's netpoller,
// so the runtime is never woken for datagrams it will not read), and put
// the duplicate in blocking mode (Recv and Send pass MSG_DONTWAIT; a
// control-plane WriteTo may then block briefly like any socket write).
// It returns the descriptor, its local address and whether it is AF_INET6.
func Adopt(pc net.PacketConn) (fd int, local netip.AddrPort, v6 bool, err error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return -1, local, false, fmt.Errorf("udpbatch: adopt %T: %w", pc, ErrNotUDP)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, local, false, fmt.Errorf("udpbatch: adopt %v: %w", pc.LocalAddr(), err)
	}
	fd = -1
	var derr error
	cerr := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil || derr != nil {
		return -1, local, false, fmt.Errorf("udpbatch: adopt %v: dup: %w", pc.LocalAddr(), errors.Join(cerr, derr))
	}
	fail := func(e error) (int, netip.AddrPort, bool, error) {
		_ = unix.Close(fd)
		return -1, netip.AddrPort{}, false, fmt.Errorf("udpbatch: adopt %v: %w", pc.LocalAddr(), e)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		return fail(ErrNotUDP)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(fmt.Errorf("getsockname: %w", err))
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		v6 = true
	default:
		return fail(ErrNotUDP)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(fmt.Errorf("set blocking: %w", err))
	}
	_ = pc.Close()
	return fd, local, v6, nil
}

// Close closes a descriptor from Adopt.
func Close(fd int) error { return unix.Close(fd) }
