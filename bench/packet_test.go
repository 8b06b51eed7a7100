package bench

import (
	"errors"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/pion/rtp"
)

func TestPacketRoundTrip(t *testing.T) {
	buf := make([]byte, 1500)
	n, err := marshalPacket(buf, 0x1234, 70000, 987654321*time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	if n != PacketSize || PacketSize != 172 {
		t.Fatalf("packet is %d bytes (PacketSize %d), want 172", n, PacketSize)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		t.Fatalf("not RTP: %v", err)
	}
	if p.Version != 2 || p.PayloadType != 0 || p.SSRC != 0x1234 || p.SequenceNumber != 70000%65536 || len(p.Payload) != PayloadSize {
		t.Errorf("header %+v, payload %d bytes", p.Header, len(p.Payload))
	}
	st, err := parsePacket(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if st.seq != 70000 || st.sent != 987654321 || st.ssrc != 0x1234 {
		t.Errorf("parsed %+v", st)
	}
	restamp(buf[:n], 123*time.Microsecond)
	if st, err := parsePacket(buf[:n]); err != nil || st.sent != 123*time.Microsecond || st.seq != 70000 || st.ssrc != 0x1234 {
		t.Errorf("after restamp: %+v, %v; want sent 123µs, seq and SSRC kept", st, err)
	}
	for _, bad := range [][]byte{nil, {0x80}, buf[:12], buf[:20]} {
		if _, err := parsePacket(bad); !errors.Is(err, ErrNotBenchPacket) {
			t.Errorf("parsePacket(%d bytes) error %v, want ErrNotBenchPacket", len(bad), err)
		}
	}
}

func TestChannelDataClassifier(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"RFC 8656 12: channel 0x4000 is ChannelData", []byte{0x40, 0x00, 0x00, 0x04}, true},
		{"RFC 8656 12: channel 0x4FFF is ChannelData", []byte{0x4F, 0xFF, 0, 0}, true},
		{"STUN message starts with 00", []byte{0x00, 0x01, 0, 0}, false},
		{"RTP starts with 10", []byte{0x80, 0, 0, 0}, false},
		{"empty", nil, false},
	} {
		if got := isChannelData(tc.b); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Path
		ok   bool
	}{
		{"ip6>ip4", PathV6toV4, true},
		{"ip4>ip6", PathV4toV6, true},
		{"6>6", Path{netaddr.IPv6, netaddr.IPv6}, true},
		{"ip6", Path{}, false},
		{"ip5>ip4", Path{}, false},
		{"", Path{}, false},
	} {
		got, err := ParsePath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePath(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in && tc.in[0] == 'i' {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}
