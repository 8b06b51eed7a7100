//go:build !linux

package udpbatch

import (
	"net"
	"net/netip"
	"syscall"
)

// Without recvmmsg, sendmmsg, epoll and raw sockets every call fails with
// ErrUnsupported, so callers fall back to the net package.

type sysHeaders struct{}

func (h *sysHeaders) init(int) {}

// Recv is recvmmsg on Linux; here it fails with ErrUnsupported.
func Recv(int, *Msgs, int, int) (int, error) { return 0, ErrUnsupported }

// Send is sendmmsg on Linux; here it fails with ErrUnsupported.
func Send(int, bool, *Msgs, int, int) (int, error) { return 0, ErrUnsupported }

// Sockaddr is a destination encoded once for repeated raw sends (SendTo).
type Sockaddr struct{ ap netip.AddrPort }

// Set records ap; it reports whether a socket of the family could reach it.
func (s *Sockaddr) Set(ap netip.AddrPort, v6 bool) bool {
	s.ap = ap
	return v6 || ap.Addr().Unmap().Is4()
}

// AddrPort returns the address.
func (s *Sockaddr) AddrPort() netip.AddrPort { return s.ap }

// SendTo is a raw sendto on Linux; here it fails with ErrUnsupported.
func SendTo(int, []byte, *Sockaddr) error { return ErrUnsupported }

// WriteTo is a sendto on Linux; here it fails with ErrUnsupported.
func WriteTo(int, []byte, netip.AddrPort, bool, bool) error { return ErrUnsupported }

// FD returns the descriptor of a socket, as on Linux.
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

// Adopt takes a socket out of the net package on Linux; here it fails.
func Adopt(net.PacketConn) (int, netip.AddrPort, bool, error) {
	return -1, netip.AddrPort{}, false, ErrUnsupported
}

// Close closes a descriptor from Adopt.
func Close(int) error { return ErrUnsupported }

// Poller is an epoll set on Linux; NewPoller fails here.
type Poller struct{}

// Events is Poll's buffer.
type Events struct{}

// NewEvents returns an empty buffer.
func NewEvents(int) *Events { return &Events{} }

// Token is never called: Poll finds nothing.
func (e *Events) Token(int) int32 { return WakeToken }

// Full reports false.
func (e *Events) Full(int) bool { return false }

// NewPoller fails with ErrUnsupported.
func NewPoller() (*Poller, error) { return nil, ErrUnsupported }

// Add fails with ErrUnsupported.
func (p *Poller) Add(int, int32) error { return ErrUnsupported }

// Remove fails with ErrUnsupported.
func (p *Poller) Remove(int) error { return ErrUnsupported }

// Poll fails with ErrUnsupported.
func (p *Poller) Poll(*Events) (int, error) { return 0, ErrUnsupported }

// Wait fails with ErrUnsupported.
func (p *Poller) Wait(func() bool) error { return ErrUnsupported }

// WaitBlocking fails with ErrUnsupported.
func (p *Poller) WaitBlocking(*Events) (int, error) { return 0, ErrUnsupported }

// Wake fails with ErrUnsupported.
func (p *Poller) Wake() error { return ErrUnsupported }

// Drain does nothing.
func (p *Poller) Drain() {}

// Close does nothing.
func (p *Poller) Close() error { return nil }

// RawSender is a raw IP socket on Linux; OpenRawSender fails here.
type RawSender struct{}

// OpenRawSender fails with ErrUnsupported.
func OpenRawSender(bool, int, int) (*RawSender, error) { return nil, ErrUnsupported }

// Len is 0.
func (s *RawSender) Len() int { return 0 }

// Cap is 0.
func (s *RawSender) Cap() int { return 0 }

// Queue is never called: OpenRawSender fails.
func (s *RawSender) Queue([]byte, netip.Addr, netip.Addr) int { return 0 }

// Flush sends nothing.
func (s *RawSender) Flush(func(int, bool)) int { return 0 }

// Close does nothing.
func (s *RawSender) Close() error { return nil }

func recv(int, *Msgs, int, int, bool) (int, error)       { return 0, ErrUnsupported }
func send(int, bool, *Msgs, int, int, bool) (int, error) { return 0, ErrUnsupported }

// EnableRecvTOS does nothing here.
func EnableRecvTOS(int, bool) {}

// SetTOS does nothing here.
func SetTOS(int, bool, uint8) {}

// SystemHopLimits returns Linux's defaults.
func SystemHopLimits() (ttl4, hop6 uint8) { return 64, 64 }
