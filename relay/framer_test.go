package relay

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its data in pieces of the sizes in chunks, cycling,
// as a TCP stream may.
type chunkReader struct {
	data   []byte
	chunks []byte
	i      int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.chunks) > 0 {
		n = int(c.chunks[c.i%len(c.chunks)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestFrameSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     []byte
		limit int
		want  int
		err   error
	}{
		{"RFC8489 5: Binding request header, no attributes", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, maxStreamFrame, 20, nil},
		{"RFC8656 12.5: ChannelData padded to 4 over streams", []byte{0x40, 0, 0, 5}, maxStreamFrame, 12, nil},
		{"RFC8656 12: ChannelData of length 0", []byte{0x40, 0, 0, 0}, maxStreamFrame, 4, nil},
		{"pion/turn#593: ChannelData 0xFFFC does not wrap", []byte{0x40, 0, 0xff, 0xfc}, maxStreamFrame, 0, errFrameTooLarge},
		{"pion/turn#593: STUN 0xFFEC does not wrap", []byte{0, 1, 0xff, 0xec}, maxStreamFrame, 0, errFrameTooLarge},
		{"the largest STUN frame that fits", []byte{0, 1, 0xff, 0xe8}, maxStreamFrame, 0xfffc, nil},
		{"unauthenticated limit", []byte{0, 3, 0x08, 0}, maxUnauthFrame, 0, errFrameTooLarge},
		{"RFC8489 5: STUN length not a multiple of 4", []byte{0, 1, 0, 3}, maxStreamFrame, 0, errBadSTUNLength},
		{"RFC8489 5: no magic cookie", []byte{0, 1, 0, 0, 1, 2, 3, 4}, maxStreamFrame, 0, errBadMagicCookie},
		{"first bits 10: neither", []byte{0x80, 0, 0, 0}, maxStreamFrame, 0, errNotTURNFrame},
		{"channel 0x3FFF is not ChannelData: a STUN header without cookie", []byte{0x3f, 0xff, 0, 0, 0, 0, 0, 0}, maxStreamFrame, 0, errBadMagicCookie},
		{"too short to tell", []byte{0x40, 0}, maxStreamFrame, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := frameSize(tc.b, tc.limit)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("frameSize(%x) = %d, %v; want %d, %v", tc.b, got, err, tc.want, tc.err)
			}
		})
	}
}

// FuzzStreamFramer: whatever the stream and however it is cut, the framer
// returns only whole frames within the limit that are exactly the stream's
// bytes in order, and ends with an error rather than spinning.
func FuzzStreamFramer(f *testing.F) {
	f.Add(append([]byte{0x40, 0x00, 0xff, 0xfc}, make([]byte, 8)...), []byte{0})
	f.Add(append([]byte{0, 1, 0xff, 0xec, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), []byte{3, 7})
	f.Add(append([]byte{0x40, 0x01, 0, 3, 'a', 'b', 'c', 0}, 0x40, 0x01, 0, 0), []byte{1, 0, 2})
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, []byte{255})
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		limit := maxStreamFrame
		if len(chunks) > 0 && chunks[0]%2 == 0 {
			limit = maxUnauthFrame
		}
		fr := streamFramer{r: &chunkReader{data: data, chunks: chunks}}
		var got []byte
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatalf("more frames than bytes: spinning")
			}
			frame, err := fr.next(limit)
			if err != nil {
				break
			}
			if len(frame) < 4 || len(frame) > limit {
				t.Fatalf("frame of %d bytes, limit %d", len(frame), limit)
			}
			got = append(got, frame...)
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("frames are not the stream's bytes in order")
		}
		if len(fr.buf) > maxStreamFrame {
			t.Fatalf("buffer grew to %d bytes", len(fr.buf))
		}
	})
}
