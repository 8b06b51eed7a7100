package udpbatch

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
)

// naiveChecksumOK verifies an Internet checksum the slow, obvious way: the
// one's complement sum of every 16-bit word, checksum included, is 0xffff.
func naiveChecksumOK(words ...[]byte) bool {
	var all []byte
	for _, w := range words {
		all = append(all, w...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var sum uint32
	for i := 0; i < len(all); i += 2 {
		sum += uint32(all[i])<<8 | uint32(all[i+1])
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestRawHeaders(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		size     int
		tos, ttl uint8
	}{
		{"192.0.2.1:49152", "198.51.100.7:5004", 172, 0, 64},
		{"192.0.2.1:65535", "198.51.100.7:1", 171, 0xb8, 64}, // odd length, EF
		{"192.0.2.1:50000", "198.51.100.7:5004", 0, 0x2a, 99},
		{"[2001:db8::1]:49152", "[2001:db8:1::7]:5004", 172, 0, 64},
		{"[2001:db8::1]:49153", "[2001:db8:1::7]:5005", 1199, 0xb9, 17}, // EF + ECT(1)
	} {
		src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		hl := RawHeaderLen(src.Addr())
		payload := bytes.Repeat([]byte{0xa5, 0x3c, 0xff}, tc.size/3+1)[:tc.size]
		pkt := make([]byte, hl+tc.size)
		copy(pkt[hl:], payload)
		PutRawHeaders(pkt, src, dst, tc.tos, tc.ttl)

		udp := pkt[hl-udpHeaderLen:]
		if got := binary.BigEndian.Uint16(udp[0:]); got != src.Port() {
			t.Errorf("%s: UDP source port %d", tc.src, got)
		}
		if got := binary.BigEndian.Uint16(udp[2:]); got != dst.Port() {
			t.Errorf("%s: UDP destination port %d", tc.src, got)
		}
		if got := int(binary.BigEndian.Uint16(udp[4:])); got != udpHeaderLen+tc.size {
			t.Errorf("%s: UDP length %d, want %d", tc.src, got, udpHeaderLen+tc.size)
		}
		if !bytes.Equal(pkt[hl:], payload) {
			t.Errorf("%s: payload changed", tc.src)
		}
		ulen := []byte{0, 0, 0, 0}
		binary.BigEndian.PutUint32(ulen, uint32(len(udp)))
		if src.Addr().Is4() {
			h, err := ipv4.ParseHeader(pkt)
			if err != nil {
				t.Fatalf("%s: %v", tc.src, err)
			}
			if h.Version != 4 || h.Len != ipv4HeaderLen || h.TotalLen != len(pkt) || h.TTL != int(tc.ttl) || h.TOS != int(tc.tos) ||
				h.Protocol != 17 || h.Flags != ipv4.DontFragment || h.Src.String() != src.Addr().String() ||
				h.Dst.String() != dst.Addr().String() {
				t.Errorf("%s: IPv4 header %+v", tc.src, h)
			}
			if !naiveChecksumOK(pkt[:ipv4HeaderLen]) {
				t.Errorf("%s: IPv4 header checksum wrong", tc.src)
			}
			// Pseudo-header: source, destination, zero, protocol, UDP length.
			if !naiveChecksumOK(pkt[12:20], []byte{0, 17}, ulen[2:], udp) {
				t.Errorf("%s: UDP checksum wrong", tc.src)
			}
			continue
		}
		if pkt[0]>>4 != 6 || int(binary.BigEndian.Uint16(pkt[4:])) != len(udp) || pkt[6] != 17 || pkt[7] != tc.ttl ||
			uint8(binary.BigEndian.Uint32(pkt[0:])>>20) != tc.tos || binary.BigEndian.Uint32(pkt[0:])&0xfffff != 0 ||
			netip.AddrFrom16([16]byte(pkt[8:24])) != src.Addr() || netip.AddrFrom16([16]byte(pkt[24:40])) != dst.Addr() {
			t.Errorf("%s: IPv6 header % x", tc.src, pkt[:ipv6HeaderLen])
		}
		// Pseudo-header: source, destination, 32-bit length, zeros, next header.
		if !naiveChecksumOK(pkt[8:40], ulen, []byte{0, 0, 0, 17}, udp) {
			t.Errorf("%s: UDP checksum wrong", tc.src)
		}
	}
}

func BenchmarkRawHeaders(b *testing.B) {
	src, dst := netip.MustParseAddrPort("[2001:db8::1]:49152"), netip.MustParseAddrPort("[2001:db8:1::7]:5004")
	pkt := make([]byte, ipv6HeaderLen+udpHeaderLen+172)
	b.SetBytes(172)
	b.ReportAllocs()
	for b.Loop() {
		PutRawHeaders(pkt, src, dst, 0xb8, 64)
	}
}
