package kfp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

// Frames for the program's tests, built and checked independently of it:
// plain Go, checksums from RFC 1071 over the RFC 768 pseudo-header.

// sum1071 is the RFC 1071 one's complement sum of b (odd length padded
// with a zero byte), starting from acc, folded to 16 bits.
func sum1071(acc uint32, b []byte) uint16 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// udpChecksum is the RFC 768 checksum of a UDP header+data between src and
// dst (RFC 8200 §8.1 for IPv6), with 0 sent as 0xffff.
func udpChecksum(src, dst netip.Addr, udp []byte) uint16 {
	var ph []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = append(ph, 0, ipProtoUDP)
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(udp)))
	} else {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(udp)))
		ph = append(ph, 0, 0, 0, ipProtoUDP)
	}
	c := ^sum1071(uint32(sum1071(0, ph)), udp)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// testFrame describes one Ethernet frame carrying UDP.
type testFrame struct {
	dstMAC, srcMAC [6]byte
	src, dst       netip.AddrPort
	payload        []byte
	// noChecksum sends UDP checksum 0; badChecksum flips a bit of it;
	// partialChecksum stores the folded pseudo-header sum, as a
	// CHECKSUM_PARTIAL skb carries.
	noChecksum, badChecksum, partialChecksum bool
	// fragment sets IPv4 MF; v4Options makes IHL 6; trailer appends bytes
	// after the IP datagram (Ethernet padding).
	fragment, v4Options bool
	trailer             int
}

// channelData returns an RFC 8656 §12.4 message: header then data.
func channelData(num uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, num)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func (f testFrame) bytes() []byte {
	udp := make([]byte, udpHdrLen, udpHdrLen+len(f.payload))
	binary.BigEndian.PutUint16(udp[udpSport:], f.src.Port())
	binary.BigEndian.PutUint16(udp[udpDport:], f.dst.Port())
	binary.BigEndian.PutUint16(udp[udpLen:], uint16(udpHdrLen+len(f.payload)))
	udp = append(udp, f.payload...)
	var c uint16
	switch {
	case f.noChecksum:
	case f.partialChecksum:
		c = pseudoSum(f.src.Addr(), f.dst.Addr(), len(udp))
	default:
		c = udpChecksum(f.src.Addr(), f.dst.Addr(), udp)
		if f.badChecksum {
			c ^= 0x0100
		}
	}
	binary.BigEndian.PutUint16(udp[udpCheck:], c)

	b := append([]byte{}, f.dstMAC[:]...)
	b = append(b, f.srcMAC[:]...)
	if f.src.Addr().Is4() {
		b = binary.BigEndian.AppendUint16(b, etherIPv4)
		ihl := 5
		if f.v4Options {
			ihl = 6
		}
		ip := make([]byte, ihl*4)
		ip[0] = byte(0x40 | ihl)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(udp)))
		ip[1] = 0xB8 // DSCP EF, as voice is marked: must not leak
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		binary.BigEndian.PutUint16(ip[6:], ip4FlagDF)
		if f.fragment {
			binary.BigEndian.PutUint16(ip[6:], 0x2000) // MF
		}
		ip[8], ip[9] = 61, ipProtoUDP
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^sum1071(0, ip))
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, etherIPv6)
		ip := make([]byte, ip6HdrLen)
		binary.BigEndian.PutUint32(ip, 0x6A012345) // traffic class and flow label set: must not leak
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6], ip[7] = ipProtoUDP, 61
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
	}
	b = append(b, udp...)
	return append(b, make([]byte, f.trailer)...)
}

// pseudoSum is the folded (not complemented) pseudo-header sum.
func pseudoSum(src, dst netip.Addr, udpLen int) uint16 {
	var ph []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ph = append(append(ph, s[:]...), d[:]...)
	} else {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
	}
	ph = append(ph, 0, ipProtoUDP)
	ph = binary.BigEndian.AppendUint16(ph, uint16(udpLen))
	return sum1071(0, ph)
}

// parsedFrame is what checkFrame found in a frame.
type parsedFrame struct {
	dstMAC, srcMAC [6]byte
	src, dst       netip.AddrPort
	ttl            byte
	tos            uint32 // IPv4 TOS, or IPv6 traffic class and flow label
	flags          uint16 // IPv4 flags and fragment offset
	payload        []byte
	udpCheck       uint16
}

// checkFrame parses an Ethernet/IP/UDP frame the program wrote and checks
// every header field a receiver checks: versions, lengths, the IPv4
// header checksum, and the UDP checksum recomputed here (mandatory for
// IPv6, RFC 8200 §8.1; 0 allowed for IPv4).
func checkFrame(b []byte) (parsedFrame, error) {
	var p parsedFrame
	if len(b) < ethHdrLen {
		return p, errors.New("short frame")
	}
	copy(p.dstMAC[:], b[ethDst:])
	copy(p.srcMAC[:], b[ethSrc:])
	var udp []byte
	switch binary.BigEndian.Uint16(b[ethType:]) {
	case etherIPv4:
		ip := b[ethHdrLen:]
		if len(ip) < ip4HdrLen || ip[0] != 0x45 {
			return p, fmt.Errorf("IPv4 header % x", ip[:min(len(ip), 20)])
		}
		if n := int(binary.BigEndian.Uint16(ip[2:])); n != len(ip) {
			return p, fmt.Errorf("IPv4 total length %d, frame has %d", n, len(ip))
		}
		if s := sum1071(0, ip[:ip4HdrLen]); s != 0xffff {
			return p, fmt.Errorf("IPv4 header checksum wrong (sum %#x)", s)
		}
		if ip[9] != ipProtoUDP {
			return p, fmt.Errorf("IPv4 protocol %d", ip[9])
		}
		p.tos, p.flags = uint32(ip[1]), binary.BigEndian.Uint16(ip[6:])
		p.ttl = ip[8]
		p.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), 0)
		udp = ip[ip4HdrLen:]
	case etherIPv6:
		ip := b[ethHdrLen:]
		if len(ip) < ip6HdrLen || ip[0]>>4 != 6 {
			return p, fmt.Errorf("IPv6 first word % x", ip[:min(len(ip), 4)])
		}
		if n := int(binary.BigEndian.Uint16(ip[4:])); n != len(ip)-ip6HdrLen {
			return p, fmt.Errorf("IPv6 payload length %d, frame has %d", n, len(ip)-ip6HdrLen)
		}
		if ip[6] != ipProtoUDP {
			return p, fmt.Errorf("IPv6 next header %d", ip[6])
		}
		p.tos = binary.BigEndian.Uint32(ip) & 0x0FFFFFFF // traffic class and flow label
		p.ttl = ip[7]
		p.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), 0)
		p.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), 0)
		udp = ip[ip6HdrLen:]
	default:
		return p, fmt.Errorf("EtherType %#x", binary.BigEndian.Uint16(b[ethType:]))
	}
	if len(udp) < udpHdrLen || int(binary.BigEndian.Uint16(udp[udpLen:])) != len(udp) {
		return p, fmt.Errorf("UDP length field vs %d bytes", len(udp))
	}
	p.src = netip.AddrPortFrom(p.src.Addr(), binary.BigEndian.Uint16(udp[udpSport:]))
	p.dst = netip.AddrPortFrom(p.dst.Addr(), binary.BigEndian.Uint16(udp[udpDport:]))
	p.udpCheck = binary.BigEndian.Uint16(udp[udpCheck:])
	p.payload = udp[udpHdrLen:]
	if p.udpCheck == 0 {
		if p.src.Addr().Is6() {
			return p, errors.New("IPv6 UDP checksum 0")
		}
		return p, nil
	}
	zeroed := append([]byte{}, udp...)
	binary.BigEndian.PutUint16(zeroed[udpCheck:], 0)
	if want := udpChecksum(p.src.Addr(), p.dst.Addr(), zeroed); want != p.udpCheck {
		return p, fmt.Errorf("UDP checksum %#04x, RFC 1071 says %#04x", p.udpCheck, want)
	}
	return p, nil
}

// TestFrameBuilder checks the test's own frames against checkFrame and
// the RFC 1071 §3 example, so a program test failing means the program.
func TestFrameBuilder(t *testing.T) {
	// RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
	if s := sum1071(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); s != 0xddf2 {
		t.Fatalf("RFC 1071 example sum = %#x, want 0xddf2", s)
	}
	for _, f := range []testFrame{
		{src: netip.MustParseAddrPort("192.0.2.2:5000"), dst: netip.MustParseAddrPort("192.0.2.1:3478"), payload: channelData(0x4001, []byte("hello"))},
		{src: netip.MustParseAddrPort("[2001:db8::2]:5000"), dst: netip.MustParseAddrPort("[2001:db8::1]:3478"), payload: []byte("odd length")},
		{src: netip.MustParseAddrPort("192.0.2.2:5000"), dst: netip.MustParseAddrPort("192.0.2.1:3478"), payload: []byte("x"), noChecksum: true},
	} {
		if _, err := checkFrame(f.bytes()); err != nil {
			t.Errorf("%v -> %v: %v", f.src, f.dst, err)
		}
	}
	f := testFrame{src: netip.MustParseAddrPort("192.0.2.2:5000"), dst: netip.MustParseAddrPort("192.0.2.1:3478"), payload: []byte("abc"), badChecksum: true}
	b := f.bytes()
	udp := b[ethHdrLen+ip4HdrLen:]
	zeroed := append([]byte{}, udp...)
	binary.BigEndian.PutUint16(zeroed[udpCheck:], 0)
	if udpChecksum(f.src.Addr(), f.dst.Addr(), zeroed) == binary.BigEndian.Uint16(udp[udpCheck:]) {
		t.Fatal("badChecksum frame has a good checksum")
	}
}
