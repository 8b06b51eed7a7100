package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// Packet layout constants: a G.711 (PCMU, payload type 0) RTP packet of 20 ms.
const (
	// PayloadSize is the RTP payload size: 20 ms of 8 kHz G.711.
	PayloadSize = 160
	// PacketSize is the size of every generated datagram on the peer leg
	// (the client leg adds the 4-byte ChannelData header).
	PacketSize = 12 + PayloadSize
	// PacketInterval is the packetisation interval: 50 packets per second.
	PacketInterval = 20 * time.Millisecond
	// rtpClockPerPacket is the RTP timestamp step: 8000 Hz * 20 ms.
	rtpClockPerPacket = 160
)

// ErrNotBenchPacket reports a datagram that is not one of ours.
var ErrNotBenchPacket = errors.New("bench: not a bench packet")

// stamp is what the payload carries: the send time (nanoseconds since the
// load's clock base, monotonic) and a 64-bit sequence number that never wraps,
// so loss is counted exactly even in long runs.
type stamp struct {
	sent time.Duration
	seq  uint64
	ssrc uint32
}

// marshalPacket writes one RTP packet into buf (len >= PacketSize) and
// returns its length.
func marshalPacket(buf []byte, ssrc uint32, seq uint64, sent time.Duration) (int, error) {
	h := rtp.Header{
		Version:        2,
		PayloadType:    0,
		SequenceNumber: uint16(seq),
		Timestamp:      uint32(seq * rtpClockPerPacket),
		SSRC:           ssrc,
	}
	n, err := h.MarshalTo(buf)
	if err != nil {
		return 0, fmt.Errorf("bench: marshal rtp header: %w", err)
	}
	p := buf[n : n+PayloadSize]
	binary.BigEndian.PutUint64(p[0:8], uint64(sent))
	binary.BigEndian.PutUint64(p[8:16], seq)
	for i := 16; i < len(p); i++ {
		p[i] = 0xFF // PCMU silence
	}
	return n + PayloadSize, nil
}

// restamp overwrites the send time of a packet marshalPacket wrote, for
// packets that waited in a batch: added latency counts from the send call.
func restamp(b []byte, sent time.Duration) {
	binary.BigEndian.PutUint64(b[PacketSize-PayloadSize:], uint64(sent))
}

// parsePacket reads the stamp back from a received packet.
func parsePacket(b []byte) (stamp, error) {
	var h rtp.Header
	n, err := h.Unmarshal(b)
	if err != nil {
		return stamp{}, fmt.Errorf("%w: %w", ErrNotBenchPacket, err)
	}
	if len(b)-n < 16 {
		return stamp{}, fmt.Errorf("%w: payload %d bytes", ErrNotBenchPacket, len(b)-n)
	}
	p := b[n:]
	return stamp{
		sent: time.Duration(binary.BigEndian.Uint64(p[0:8])),
		seq:  binary.BigEndian.Uint64(p[8:16]),
		ssrc: h.SSRC,
	}, nil
}
