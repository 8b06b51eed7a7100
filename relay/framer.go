//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"io"
)

// Over TCP and TLS, TURN is a byte stream of STUN messages and ChannelData
// frames (RFC 8656 §12.5, RFC 8489 §6.2.2). The relay frames the stream
// itself, before pion sees it: pion/turn v5.1.2 computes a frame's size in 16
// bits, so a ChannelData header claiming 0xFFFC bytes or a STUN header
// claiming 0xFFEC wraps to a zero-length frame and its reader recurses until
// the stack overflows (pion/turn#593). The framer computes every length in
// full width and bounds it, so pion only ever reads frames whose sizes fit
// its arithmetic; the workaround can go when pion's framing is fixed.

// Frame size limits.
const (
	// maxStreamFrame bounds any frame, header and padding included. It is
	// the largest multiple of 4 below 1<<16, so 20 + STUN length and 4 +
	// padded ChannelData length never wrap in pion's 16-bit arithmetic,
	// and it holds the largest datagram a relay socket can send.
	maxStreamFrame = 0xFFFC
	// maxUnauthFrame bounds frames before a connection has authenticated:
	// the only useful ones are Binding and Allocate requests, a few hundred
	// bytes. It keeps the memory a stranger can pin per connection small.
	maxUnauthFrame = 2048
	// initialFrameBuf is the buffer a stream starts with; it grows to the
	// largest frame seen, at most maxStreamFrame.
	initialFrameBuf = 512
)

// Framing errors. Each closes the connection and is counted by reason.
var (
	errNotTURNFrame   = errors.New("relay: stream: neither a STUN message nor ChannelData")
	errFrameTooLarge  = errors.New("relay: stream: frame larger than allowed")
	errBadSTUNLength  = errors.New("relay: stream: STUN length not a multiple of 4")
	errBadMagicCookie = errors.New("relay: stream: STUN message without the magic cookie")
	errBadChannel     = errors.New("relay: stream: ChannelData with a channel number outside the valid range")
	errTruncatedFrame = errors.New("relay: stream: connection closed inside a frame")
)

// stunMagicCookie is RFC 8489 §5's fixed value in bytes 4–7 of every STUN
// message.
const stunMagicCookie = 0x2112A442

// frameSize returns the size of the frame that starts b (header, body and
// ChannelData padding), or 0 when b is too short to tell yet. limit bounds
// the size.
func frameSize(b []byte, limit int) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	var size int
	switch b[0] >> 6 {
	case 0b00: // STUN: 20-byte header, then length bytes of attributes
		if length%4 != 0 {
			return 0, errBadSTUNLength
		}
		if len(b) >= 8 && binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
			return 0, errBadMagicCookie
		}
		size = 20 + length
	case 0b01: // ChannelData: 4-byte header, data padded to 4 over streams
		if n := binary.BigEndian.Uint16(b[0:2]); n < channeldata.MinNumber || n > channeldata.MaxNumber {
			return 0, errBadChannel
		}
		size = 4 + (length+3)&^3
	default:
		return 0, errNotTURNFrame
	}
	if size > limit {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, size, limit)
	}
	return size, nil
}

// streamFramer reads whole frames from a stream. Its buffer starts small and
// grows to the largest frame it has had to hold.
type streamFramer struct {
	r          io.Reader
	buf        []byte
	start, end int // buf[start:end] is read and not yet returned
}

// next returns the next whole frame, valid until the following call. limit
// bounds the frame's size. A stream that ends between frames gives io.EOF;
// one that ends inside a frame gives errTruncatedFrame.
func (f *streamFramer) next(limit int) ([]byte, error) {
	for {
		size, err := frameSize(f.buf[f.start:f.end], limit)
		if err != nil {
			return nil, err
		}
		if size > 0 && f.end-f.start >= size {
			frame := f.buf[f.start : f.start+size]
			f.start += size
			return frame, nil
		}
		need := size
		if need == 0 {
			need = 8 // enough to size any frame and check the cookie
		}
		f.makeRoom(need)
		n, err := f.r.Read(f.buf[f.end:])
		f.end += n
		if err != nil {
			if n > 0 {
				continue // use what arrived with the error first
			}
			if errors.Is(err, io.EOF) && f.end > f.start {
				return nil, errTruncatedFrame
			}
			return nil, err
		}
	}
}

// makeRoom ensures buf[start:] can hold need bytes, moving the unread bytes
// to the front and growing buf when it must.
func (f *streamFramer) makeRoom(need int) {
	if f.start == f.end {
		f.start, f.end = 0, 0
	}
	if len(f.buf)-f.start >= need && f.end < len(f.buf) {
		return
	}
	if len(f.buf) >= need {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
		if f.end < len(f.buf) {
			return
		}
	}
	size := max(initialFrameBuf, len(f.buf))
	for size < need {
		size *= 2
	}
	size = min(size, maxStreamFrame)
	nb := make([]byte, size)
	f.end = copy(nb, f.buf[f.start:f.end])
	f.start = 0
	f.buf = nb
}
