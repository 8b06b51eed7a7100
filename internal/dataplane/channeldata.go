package dataplane

import "encoding/binary"

// ChannelData framing, RFC 8656 section 12.4: a 4-byte header (channel
// number, then the length of the application data) followed by the data.
// pion/turn's proto package is internal, so the fast path (and the bench's
// load generator) reads and writes this fixed header itself; everything else
// (STUN) stays with pion/stun.

// ChannelDataHeaderLen is the size of the ChannelData header.
const ChannelDataHeaderLen = 4

// The channel numbers the relay binds and forwards. RFC 8656 section 12
// ends the range at 0x4FFF, but RFC 5766 allowed up to 0x7FFF and coturn's
// clients still bind numbers there; both are unambiguous ChannelData on the
// wire (first two bits 01). The relay's request gate accepts ChannelBind for
// exactly this range, so every bound channel takes this one path and one
// bandwidth bucket.
const (
	MinChannelNumber = 0x4000
	MaxChannelNumber = 0x7FFF
)

// ParseChannelData reports whether b starts like a ChannelData message and,
// if so, its channel number and application-data length. ok with n < 0
// means a ChannelData message whose length field exceeds the datagram, which
// RFC 8656 section 12.5 says to discard. Over UDP the data MAY be followed
// by padding; bytes past the length field are ignored.
func ParseChannelData(b []byte) (num uint16, n int, ok bool) {
	if len(b) < ChannelDataHeaderLen {
		return 0, 0, false
	}
	num = binary.BigEndian.Uint16(b)
	if num < MinChannelNumber || num > MaxChannelNumber {
		return 0, 0, false
	}
	n = int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b)-ChannelDataHeaderLen {
		return num, -1, true
	}
	return num, n, true
}

// PutChannelDataHeader writes the ChannelData header for n bytes of data on
// channel num into b[:4]. Over UDP the message is not padded (RFC 8656
// section 12.5: padding is only required over TCP/TLS), so the datagram is
// b[:4+n].
func PutChannelDataHeader(b []byte, num uint16, n int) {
	_ = b[3]
	binary.BigEndian.PutUint16(b, num)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
}
