//go:build linux

package udpbatch

import (
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tosCtrlSpace is one datagram's control buffer for its marking: room for
// an IP_TOS (one byte) and an IPV6_TCLASS (an int) message.
var tosCtrlSpace = 2 * unix.CmsgSpace(4)

// EnableRecvTOS asks the kernel for each datagram's TOS / Traffic Class on
// fd (IPv6 sockets report IPv4-mapped traffic with IP_TOS, so both are set
// there), for a Socket with RecvTOS.
func EnableRecvTOS(fd int, v6 bool) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
	}
}

// SetTOS makes fd send with TOS / Traffic Class tos from now on.
func SetTOS(fd int, v6 bool, tos uint8) {
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, int(tos))
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, int(tos))
}

// parseTOS reads the TOS / Traffic Class from a received control buffer
// without allocating (unix.ParseSocketControlMessage would).
func parseTOS(b []byte) uint8 {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return 0
		}
		data := b[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TOS && len(data) >= 1:
			return data[0]
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_TCLASS && len(data) >= 4:
			return uint8(*(*int32)(unsafe.Pointer(&data[0])))
		}
		s := unix.CmsgSpace(l - unix.CmsgLen(0))
		if s > len(b) {
			return 0
		}
		b = b[s:]
	}
	return 0
}

// putTOS gives send slot i a control message setting its TOS / Traffic
// Class: IPV6_TCLASS on an AF_INET6 socket, IP_TOS otherwise (both take an
// int, ip(7) and ipv6(7)).
func (h *sysHeaders) putTOS(i int, tos uint8, v6 bool) {
	b := h.ctrl[i*tosCtrlSpace : (i+1)*tosCtrlSpace]
	clear(b)
	c := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	if v6 {
		c.Level, c.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	} else {
		c.Level, c.Type = unix.IPPROTO_IP, unix.IP_TOS
	}
	c.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = int32(tos)
	h.hdrs[i].Hdr.Control = &b[0]
	h.hdrs[i].Hdr.SetControllen(unix.CmsgSpace(4))
}

// SystemHopLimits reads the TTL and hop limit a UDP socket of this network
// namespace would use (net.ipv4.ip_default_ttl,
// net.ipv6.conf.all.hop_limit), for the headers of raw sends; 64 when
// unreadable.
func SystemHopLimits() (ttl4, hop6 uint8) {
	read := func(path string) uint8 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 64
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || v < 1 || v > 255 {
			return 64
		}
		return uint8(v)
	}
	return read("/proc/sys/net/ipv4/ip_default_ttl"), read("/proc/sys/net/ipv6/conf/all/hop_limit")
}
