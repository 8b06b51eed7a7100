package udpbatch

import (
	"encoding/binary"
	"net/netip"
)

// Header sizes of a datagram sent on a raw (IP_HDRINCL) socket.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8

	// RawHeadroom is the room a UDP payload needs in front of it to be sent
	// on a raw socket: an IPv6 and a UDP header. Readers that leave it can
	// have the headers written in place, no copy.
	RawHeadroom = ipv6HeaderLen + udpHeaderLen
)

// RawHeaderLen returns the IP+UDP header length for a datagram from src.
func RawHeaderLen(src netip.Addr) int {
	if src.Is4() {
		return ipv4HeaderLen + udpHeaderLen
	}
	return ipv6HeaderLen + udpHeaderLen
}

// PutRawHeaders writes the IP and UDP headers of a datagram from src to dst
// into pkt[:RawHeaderLen(src)]; the UDP payload is pkt[RawHeaderLen:].
// tos is the TOS / Traffic Class octet (DSCP and ECN), ttl the TTL / hop
// limit (the system default, SystemHopLimits: RFC 8656 §14).
// src and dst must be of one family (IPv4 as 4-byte addresses). The UDP
// checksum is always computed (IPv6 requires it; over IPv4 it is what a UDP
// socket sends too). For IPv4 the kernel fills the total length, the
// identification and the header checksum (raw_send_hdrinc); they are
// written anyway so the headers are complete on their own.
func PutRawHeaders(pkt []byte, src, dst netip.AddrPort, tos, ttl uint8) {
	s, d := src.Addr(), dst.Addr()
	var udp []byte
	var sum uint64
	if s.Is4() {
		ip := pkt[:ipv4HeaderLen]
		ip[0] = 0x45 // version 4, 5 words
		ip[1] = tos
		binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(ip[4:], 0)      // identification: the kernel picks one
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF, as a UDP socket's default PMTU discovery
		ip[8] = ttl
		ip[9] = 17 // UDP
		binary.BigEndian.PutUint16(ip[10:], 0)
		sa, da := s.As4(), d.As4()
		copy(ip[12:16], sa[:])
		copy(ip[16:20], da[:])
		binary.BigEndian.PutUint16(ip[10:], ^uint16(fold(onesSum(ip, 0))))
		udp = pkt[ipv4HeaderLen:]
		sum = onesSum(ip[12:20], uint64(17)+uint64(len(udp)))
	} else {
		ip := pkt[:ipv6HeaderLen]
		binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(tos)<<20) // version 6, traffic class, no flow label
		binary.BigEndian.PutUint16(ip[4:], uint16(len(pkt)-ipv6HeaderLen))
		ip[6] = 17 // UDP
		ip[7] = ttl
		sa, da := s.As16(), d.As16()
		copy(ip[8:24], sa[:])
		copy(ip[24:40], da[:])
		udp = pkt[ipv6HeaderLen:]
		sum = onesSum(ip[8:40], uint64(17)+uint64(len(udp)))
	}
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	binary.BigEndian.PutUint16(udp[6:], 0)
	c := ^uint16(fold(onesSum(udp, sum)))
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}

// onesSum adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to sum: the Internet checksum's sum (RFC 1071) before folding.
// Adding 32-bit words and folding later gives the same result, since
// 2^16 = 1 modulo 2^16-1.
func onesSum(b []byte, sum uint64) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// fold reduces an Internet checksum sum to 16 bits.
func fold(sum uint64) uint64 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum
}
