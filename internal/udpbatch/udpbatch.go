// Package udpbatch owns batched UDP socket I/O outside Go's netpoller: the
// message slots of a batch and the kernel headers describing them, the
// sockaddr codec, batch receive and send (recvmmsg/sendmmsg), raw IP sends
// from any source address, and a waiter that parks a goroutine in the
// netpoller on a private epoll set. The relay's data plane and the bench's
// load generator both use it; nothing in it allocates per datagram.
//
// This file is the whole contract. The Linux implementation is in the
// *_linux.go files; elsewhere every call returns ErrUnsupported, so callers
// fall back to the net package per feature.
//
// golang.org/x/net's ipv4/ipv6 ReadBatch makes the same recvmmsg call, but it
// returns each source address as a fresh *net.UDPAddr (two heap allocations
// per datagram) and reads only through the netpoller (a RawConn), so it does
// not fit descriptors taken out of the netpoller; where a socket stays in the
// netpoller and allocations do not matter (the bench's peer sends), callers
// use x/net directly.
//
// Example:
//
//	ms := udpbatch.NewMsgs(64, 2048, 0)
//	n, err := udpbatch.Recv(fd, ms, 0, len(ms.M))
//	for i := range n {
//		m := &ms.M[i]
//		m.Buf = m.Buf[:m.N] // echo it back
//	}
//	sent, err := udpbatch.Send(fd, v6, ms, 0, n)
package udpbatch

import (
	"errors"
	"net/netip"
)

// ErrUnsupported is returned where the platform lacks the batch calls
// (recvmmsg, sendmmsg, epoll, raw sockets): everywhere but Linux.
var ErrUnsupported = errors.New("udpbatch: not supported on this platform")

// Message is one datagram slot of a batch.
type Message struct {
	// Buf is the datagram: for a receive the space to fill, for a send the
	// bytes to send. It may point anywhere inside Mem.
	Buf []byte
	// N is the number of bytes a receive stored in Buf.
	N int
	// Addr is the source (receive) or destination (send). IPv4 addresses
	// are always in their 4-byte form, never IPv4-mapped.
	Addr netip.AddrPort
	// Trunc reports that the datagram did not fit Buf (receive).
	Trunc bool
	// TOS is the datagram's TOS / Traffic Class octet: received on a
	// Socket with RecvTOS, sent as the datagram's own marking on one with
	// SendTOS (0: the socket's).
	TOS uint8
	// Mem is the slot's own backing buffer, so that Buf can point into it
	// at an offset (headroom for headers written later) and come back.
	Mem []byte
	// OOB is the slot's control-message space for a receive (nil: none);
	// NOOB is how much of it the kernel filled.
	OOB  []byte
	NOOB int
}

// Msgs is a preallocated batch: message slots and the kernel headers that
// describe them. One goroutine owns a Msgs; it is never shared, so the
// kernel headers need no locking.
type Msgs struct {
	M   []Message
	sys sysHeaders
}

// NewMsgs returns n slots of slotSize bytes each, with oobSize bytes of
// control-message space per slot (0: none).
func NewMsgs(n, slotSize, oobSize int) *Msgs {
	ms := &Msgs{M: make([]Message, n)}
	mem := make([]byte, n*slotSize)
	var oob []byte
	if oobSize > 0 {
		oob = make([]byte, n*oobSize)
	}
	for i := range ms.M {
		m := &ms.M[i]
		m.Mem = mem[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
		m.Buf = m.Mem
		if oob != nil {
			m.OOB = oob[i*oobSize : (i+1)*oobSize : (i+1)*oobSize]
		}
	}
	ms.sys.init(n)
	return ms
}

// Batch is a forwarding loop's whole view of one datagram socket: receive a
// batch, send a batch. Neither call blocks. Socket is the production
// implementation; tests drive loops with a fake.
type Batch interface {
	// ReadBatch receives up to hi-lo datagrams into ms.M[lo:hi] and returns
	// how many it received; (0, nil) means nothing is waiting.
	ReadBatch(ms *Msgs, lo, hi int) (int, error)
	// WriteBatch sends ms.M[lo:hi] and returns how many datagrams the
	// kernel accepted. The caller drops (and counts) what was not accepted.
	WriteBatch(ms *Msgs, lo, hi int) (int, error)
}

// Socket is Batch on a UDP socket descriptor (Recv and Send).
type Socket struct {
	// FD is the descriptor; it may be in blocking mode (every call passes
	// MSG_DONTWAIT).
	FD int
	// V6 is set for an AF_INET6 socket: destinations are written as
	// sockaddr_in6, IPv4 ones in their IPv4-mapped form.
	V6 bool
	// RecvTOS: the socket reports each datagram's TOS / Traffic Class
	// (EnableRecvTOS); reads collect it into Message.TOS.
	RecvTOS bool
	// SendTOS: writes give each datagram with a Message.TOS its own
	// IP_TOS / IPV6_TCLASS control message (one socket sending to many
	// destinations, each with its own marking).
	SendTOS bool
}

// ReadBatch implements Batch with Recv.
func (s Socket) ReadBatch(ms *Msgs, lo, hi int) (int, error) {
	return recv(s.FD, ms, lo, hi, s.RecvTOS)
}

// WriteBatch implements Batch with Send.
func (s Socket) WriteBatch(ms *Msgs, lo, hi int) (int, error) {
	return send(s.FD, s.V6, ms, lo, hi, s.SendTOS)
}

// More sentinel errors.
var (
	// ErrNotUDP is returned when adopting a socket that is not a UDP
	// socket with a file descriptor (*net.UDPConn).
	ErrNotUDP = errors.New("udpbatch: not a UDP socket with a descriptor")
	// ErrNotPollable is returned by Poller.Wait when the runtime cannot
	// poll the epoll descriptor; WaitBlocking still works.
	ErrNotPollable = errors.New("udpbatch: epoll descriptor not pollable")
)

// WakeToken is the token Poller.Poll reports after Poller.Wake.
const WakeToken int32 = -1

// ErrFamilyUnavailable is returned by OpenRawSender when the kernel has the
// address family off (no sockets of it at all).
var ErrFamilyUnavailable = errors.New("udpbatch: address family unavailable")
