package bench

import (
	"net/netip"
	"unsafe"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"golang.org/x/sys/unix"
)

// rxBatch is one reader's receive batch: recvmmsg(2) headers with a buffer,
// a source address and a control buffer (for the kernel receive time) per
// slot, allocated once, so the generator's receive path allocates nothing.
// x/net's ReadBatch makes the same call but allocates a *net.UDPAddr per
// datagram and cannot be issued from inside a RawConn.Read callback.
type rxBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
	oobs  [][]byte
}

func newRxBatch() *rxBatch {
	m := &rxBatch{
		hdrs:  make([]unix.Mmsghdr, peerBatch),
		iovs:  make([]unix.Iovec, peerBatch),
		names: make([]unix.RawSockaddrInet6, peerBatch),
		bufs:  make([][]byte, peerBatch),
		oobs:  make([][]byte, peerBatch),
	}
	for i := range m.hdrs {
		m.bufs[i] = make([]byte, 1500)
		m.oobs[i] = make([]byte, oobSize)
	}
	return m
}

// read is one non-blocking recvmmsg of up to max datagrams on fd; it
// returns how many arrived (0 and EAGAIN when none were queued).
func (m *rxBatch) read(fd, max int) (int, error) {
	max = min(max, len(m.hdrs))
	for i := range max {
		m.iovs[i].Base = unsafe.SliceData(m.bufs[i])
		m.iovs[i].SetLen(len(m.bufs[i]))
		h := &m.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Control = unsafe.SliceData(m.oobs[i])
		h.SetControllen(len(m.oobs[i]))
		h.Flags = 0
		m.hdrs[i].Len = 0
	}
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[0])),
		uintptr(max), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram i of the last read: payload, control messages and source.
func (m *rxBatch) datagram(i int) (b, oob []byte, from netip.AddrPort) {
	h := &m.hdrs[i]
	return m.bufs[i][:h.Len], m.oobs[i][:h.Hdr.Controllen], dataplane.AddrPortFromSockaddr(&m.names[i])
}
