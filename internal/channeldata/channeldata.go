// Package channeldata reads and writes TURN ChannelData framing, RFC 8656
// section 12.4: a 4-byte header (channel number, then the length of the
// application data) followed by the data. pion/turn's proto package is
// internal, so the data plane, the relay's request gate and the bench's
// load generator share this fixed header here; everything else (STUN)
// stays with pion/stun.
//
// Example:
//
//	if num, n, ok := channeldata.Parse(b); ok && n >= 0 {
//		payload := b[channeldata.HeaderLen : channeldata.HeaderLen+n]
//		_, _ = num, payload
//	}
package channeldata

import "encoding/binary"

// HeaderLen is the size of the ChannelData header.
const HeaderLen = 4

// The channel numbers the relay binds and forwards. RFC 8656 section 12
// ends the range at 0x4FFF, but RFC 5766 allowed up to 0x7FFF and coturn's
// clients still bind numbers there; both are unambiguous ChannelData on the
// wire (first two bits 01). The relay's request gate accepts ChannelBind for
// exactly this range, so every bound channel takes this one path and one
// bandwidth bucket.
const (
	MinNumber = 0x4000
	MaxNumber = 0x7FFF
)

// Parse reports whether b starts like a ChannelData message and,
// if so, its channel number and application-data length. ok with n < 0
// means a ChannelData message whose length field exceeds the datagram, which
// RFC 8656 section 12.5 says to discard. Over UDP the data MAY be followed
// by padding; bytes past the length field are ignored.
func Parse(b []byte) (num uint16, n int, ok bool) {
	if len(b) < HeaderLen {
		return 0, 0, false
	}
	num = binary.BigEndian.Uint16(b)
	if num < MinNumber || num > MaxNumber {
		return 0, 0, false
	}
	n = int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b)-HeaderLen {
		return num, -1, true
	}
	return num, n, true
}

// PutHeader writes the ChannelData header for n bytes of data on
// channel num into b[:4]. Over UDP the message is not padded (RFC 8656
// section 12.5: padding is only required over TCP/TLS), so the datagram is
// b[:4+n].
func PutHeader(b []byte, num uint16, n int) {
	_ = b[3]
	binary.BigEndian.PutUint16(b, num)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
}
