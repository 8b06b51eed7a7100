package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// oobSize holds one SCM_TIMESTAMPNS control message (16-byte header, 16-byte
// timespec) with room to spare.
const oobSize = 64

// enableRxTimestamps asks the kernel to stamp every datagram of c with its
// software receive time (SO_TIMESTAMPNS, CLOCK_REALTIME). Latency is then
// measured up to the moment the packet reached the generator's socket, so
// time the generator itself waited for a CPU is not charged to the relay.
func enableRxTimestamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("bench: rx timestamps: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return fmt.Errorf("bench: rx timestamps: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("bench: rx timestamps: setsockopt SO_TIMESTAMPNS: %w", serr)
	}
	return nil
}

// rxTime returns the kernel receive time carried in oob (nanoseconds since
// the Unix epoch), or false when there is none.
func rxTime(oob []byte) (time.Duration, bool) {
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, false
		}
		if hdr.Level == unix.SOL_SOCKET && hdr.Type == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			return time.Duration(sec*int64(time.Second) + nsec), true
		}
		oob = rest
	}
	return 0, false
}

// wallNow is the send and fallback receive clock: nanoseconds since the
// Unix epoch, the clock kernel receive timestamps use.
func wallNow() time.Duration { return time.Duration(time.Now().UnixNano()) }
