package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Bounds of the bad-input tests: enough to shake out panics and leaks, small
// enough to stay well under a second of sending on a loaded 2-core machine.
const (
	randomDatagrams = 3000
	idleTCPConns    = 50
	// settleTimeout bounds the wait for goroutines and descriptors to return
	// to their baseline after connections or the relay close.
	settleTimeout = 5 * time.Second
)

// stunHeader is a 20-byte STUN header with the given type and declared length.
func stunHeader(typ uint16, length uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:2], typ)
	binary.BigEndian.PutUint16(b[2:4], length)
	binary.BigEndian.PutUint32(b[4:8], stunMagicCookie)
	copy(b[8:20], "isthmus-txid")
	return b
}

// bindingRequest is a valid Binding request, the starting point of every mutation.
func bindingRequest(tb testing.TB) []byte {
	tb.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// malformedDatagrams is a catalogue of truncated and lying STUN and ChannelData.
func malformedDatagrams(tb testing.TB) map[string][]byte {
	tb.Helper()
	valid := bindingRequest(tb)
	badCookie := append([]byte(nil), valid...)
	badCookie[4] ^= 0xff
	badFingerprint := append([]byte(nil), valid...)
	badFingerprint[len(badFingerprint)-1] ^= 0xff
	attrOverflow := append(stunHeader(0x0001, 8), 0x80, 0x22, 0xff, 0xff, 'x', 'y', 'z', 'w')
	allocNoAuthGarbageMI := append(stunHeader(0x0003, 24), 0x00, 0x08, 0x00, 0x14)
	allocNoAuthGarbageMI = append(allocNoAuthGarbageMI, bytes.Repeat([]byte{0xAA}, 20)...)
	unknownRequired := append(stunHeader(0x0001, 8), 0x7f, 0xfe, 0x00, 0x04, 1, 2, 3, 4)
	zeroLenAttrs := append(stunHeader(0x0003, 16), make([]byte, 16)...) // four 0-length type-0 attributes
	return map[string][]byte{
		"empty datagram":                            {},
		"one byte":                                  {0x00},
		"19-byte truncated header":                  valid[:19],
		"header claims 100 bytes, has none":         stunHeader(0x0001, 100),
		"header length not a multiple of 4":         append(stunHeader(0x0001, 3), 1, 2, 3),
		"bad magic cookie":                          badCookie,
		"bad FINGERPRINT":                           badFingerprint,
		"attribute length beyond message":           attrOverflow,
		"Allocate with garbage MESSAGE-INTEGRITY":   allocNoAuthGarbageMI,
		"unknown comprehension-required attribute":  unknownRequired,
		"Allocate with zero-length attributes":      zeroLenAttrs,
		"Binding truncated mid-attribute":           valid[:len(valid)-3],
		"success response class from a client":      stunHeader(0x0101, 0),
		"Data indication from a client":             stunHeader(0x0017, 0),
		"ChannelData header only":                   {0x40, 0x00},
		"ChannelData length beyond datagram":        {0x40, 0x00, 0x03, 0xe8, 'a', 'b', 'c', 'd'},
		"ChannelData length shorter than datagram":  append([]byte{0x40, 0x00, 0x00, 0x01}, bytes.Repeat([]byte{'z'}, 64)...),
		"ChannelData on unbound channel 0x4001":     channelData(0x4001, []byte("unbound")),
		"ChannelData on reserved channel 0x7fff":    channelData(0x7fff, []byte("reserved")),
		"ChannelData on channel 0x8000 (bad class)": channelData(0x8000, []byte("nonsense")),
		"ChannelData on channel 0xffff":             channelData(0xffff, []byte("nonsense")),
		"ChannelData zero length":                   channelData(0x4000, nil),
	}
}

// TestBadInputUDP floods both UDP listeners with malformed and random datagrams,
// from a stranger and from a client with an allocation. The relay must survive,
// keep relaying for the existing allocation, serve new clients, count what it
// dropped, and leak neither goroutines nor descriptors.
func TestBadInputUDP(t *testing.T) {
	// Not parallel: it counts the whole process's goroutines and descriptors.
	g0, fd0 := runtime.NumGoroutine(), countFDs(t)
	r := startRelay(t, nil)

	t.Run("malformed and random datagrams", func(t *testing.T) {
		// An allocation made before the flood must keep working after it.
		before, err := newPionClient(t, r.Addr("6"), turn.RequestedAddressFamilyIPv4, testUser, testPassword)
		if err != nil {
			t.Fatal(err)
		}
		peerBefore := listenPeer(t, "127.0.0.1:0")
		exchange(t, before.relayed, peerBefore, 3)

		rng := rand.New(rand.NewPCG(0x15, 0x7a))
		for _, fam := range []string{"4", "6"} {
			junk := dialSTUN(t, "udp", r.Addr(fam), "", "")
			for name, d := range malformedDatagrams(t) {
				if err := junk.Write(d); err != nil {
					t.Fatalf("IPv%s: send %s: %v", fam, name, err)
				}
			}
			// Largest UDP payloads over each family (65535 minus IP and UDP headers).
			size := 65507
			if fam == "6" {
				size = 65527
			}
			big := make([]byte, size)
			fillRandom(rng, big)
			big[0] = 0x00 // looks like STUN
			if err := junk.Write(big); err != nil {
				t.Fatalf("IPv%s: send %d-byte datagram: %v", fam, len(big), err)
			}
			big[0] = 0x40 // looks like ChannelData
			if err := junk.Write(big); err != nil {
				t.Fatalf("IPv%s: send %d-byte datagram: %v", fam, len(big), err)
			}
			for i := 0; i < randomDatagrams; i++ {
				d := make([]byte, rng.IntN(1500))
				fillRandom(rng, d)
				if len(d) > 0 && i%3 == 0 {
					d[0] &= 0x3f // force the STUN first-bits pattern
				} else if len(d) > 0 && i%3 == 1 {
					d[0] = 0x40 | d[0]&0x0f // force ChannelData
				}
				_ = junk.Write(d) // loopback may drop when the relay's buffer is full; that is fine
			}
			// The same socket then asks for a Binding: it lands on the same
			// listener socket after the junk, so the relay read all of it.
			if err := bindingWorks(junk); err != nil {
				t.Fatalf("IPv%s: after %d malformed datagrams: %v", fam, randomDatagrams, err)
			}
		}

		// Bad ChannelData from a client with an allocation and a bound channel.
		c := dialSTUN(t, "udp", r.Addr("6"), testUser, testPassword)
		c.MustAllocate()
		peer := listenPeer(t, "127.0.0.1:0")
		if res := c.Request(stun.MethodChannelBind, peerAddress(peer.addr()), channelNumber(0x4000)); res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("ChannelBind: %s", describe(res))
		}
		for _, d := range [][]byte{
			{0x40, 0x00},                            // header cut short
			{0x40, 0x00, 0xff, 0xff, 1, 2, 3},       // length beyond datagram
			channelData(0x4001, []byte("unbound")),  // unbound channel
			channelData(0x4fff, []byte("unbound")),  // unbound channel, top of range
			append(channelData(0x4000, nil), 0, 0),  // zero length plus padding
			{0x40, 0x00, 0x00, 0x08, 'x', 'y', 'z'}, // 8 declared, 3 present
		} {
			if err := c.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Write(channelData(0x4000, []byte("still-bound"))); err != nil {
			t.Fatal(err)
		}
		// Some of the frames above are valid (a zero-length payload; a length
		// shorter than the datagram); their payloads may arrive first.
		var seen []string
		for len(seen) < 8 {
			got, _, err := peer.readFrom()
			if err != nil {
				t.Errorf("after bad ChannelData on the client's own 5-tuple, peer got %q then %v, want %q", seen, err, "still-bound")
				break
			}
			if string(got) == "still-bound" {
				break
			}
			seen = append(seen, string(got))
		}

		exchange(t, before.relayed, peerBefore, 3)
		for _, fam := range []string{"4", "6"} {
			after, err := newPionClient(t, r.Addr(fam), turn.RequestedAddressFamilyIPv6, testUser, testPassword)
			if err != nil {
				t.Fatalf("new client over IPv%s after the flood: %v", fam, err)
			}
			exchange(t, after.relayed, listenPeer(t, "[::1]:0"), 3)
		}
	})

	sum, found := r.MetricSum(t, []string{"drop"})
	if !found {
		t.Errorf("no metric with \"drop\" in its name; the relay must count what it drops (metrics: %v)", r.MetricNames(t))
	} else if sum == 0 {
		t.Errorf("drop counters are all 0 after %d malformed datagrams: malformed input was dropped silently", 2*randomDatagrams)
	}
	logDropCounters(t, r)

	r.Close(t)
	assertSettled(t, "after the relay closed", g0, fd0)
}

// TestBadInputTCP opens garbage, stalled and half-open TCP streams on both
// listeners. While they stay open the relay must keep serving others; once
// they close their goroutines and descriptors must go away.
func TestBadInputTCP(t *testing.T) {
	g0, fd0 := runtime.NumGoroutine(), countFDs(t)
	r := startRelay(t, nil)
	g1, fd1 := runtime.NumGoroutine(), countFDs(t)

	t.Run("garbage, stalled and half-open streams", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(0x7c, 0x9))
		var open []net.Conn
		dial := func(fam string) net.Conn {
			t.Helper()
			c, err := net.DialTimeout("tcp", r.Addr(fam).String(), ioTimeout)
			if err != nil {
				t.Fatalf("dial TCP IPv%s: %v", fam, err)
			}
			open = append(open, c)
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
		for _, fam := range []string{"4", "6"} {
			// Connect and close at once.
			_ = dial(fam).Close()

			// Half-close: the relay sees EOF and should close its side.
			hc := dial(fam).(*net.TCPConn)
			if err := hc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := expectEOF(hc); err != nil {
				t.Errorf("IPv%s: half-closed stream: %v", fam, err)
			}

			// Random garbage, left open.
			g := dial(fam)
			junk := make([]byte, 4096)
			fillRandom(rng, junk)
			_, _ = g.Write(junk)

			// A STUN header that promises 65532 bytes, then silence.
			_, _ = dial(fam).Write(stunHeader(0x0003, 0xfffc))
			// Half a ChannelData header, then silence.
			_, _ = dial(fam).Write([]byte{0x40, 0x00})
			// A ChannelData header promising 65535 bytes and 10 of them.
			_, _ = dial(fam).Write(append([]byte{0x40, 0x00, 0xff, 0xff}, make([]byte, 10)...))
			// Idle connections that never send.
			for i := 0; i < idleTCPConns/2; i++ {
				dial(fam)
			}

			// A valid Binding request, one byte per write: framing must cope.
			frag := dial(fam)
			req := bindingRequest(t)
			for i := range req {
				if _, err := frag.Write(req[i : i+1]); err != nil {
					t.Fatalf("IPv%s: fragmented write: %v", fam, err)
				}
			}
			if err := readBindingResponse(frag, req); err != nil {
				t.Errorf("IPv%s: Binding request sent a byte at a time: %v", fam, err)
			}
		}

		// With all of that open, others are still served over TCP and UDP.
		for _, fam := range []string{"4", "6"} {
			c := dialSTUN(t, "tcp", r.Addr(fam), testUser, testPassword)
			relayed, _ := c.MustAllocate()
			if !relayed.Addr().Is4() {
				t.Errorf("IPv%s TCP client with stalled streams around: relayed %s, want IPv4", fam, relayed)
			}
			c.Release()
			pc, err := newPionClient(t, r.Addr(fam), turn.RequestedAddressFamilyIPv4, testUser, testPassword)
			if err != nil {
				t.Fatalf("pion client over IPv%s UDP with stalled TCP streams open: %v", fam, err)
			}
			exchange(t, pc.relayed, listenPeer(t, "127.0.0.1:0"), 3)
		}
		for _, c := range open {
			_ = c.Close()
		}
	})
	assertSettled(t, "after the bad TCP streams closed (relay still running)", g1, fd1)

	r.Close(t)
	assertSettled(t, "after the relay closed", g0, fd0)
}

// expectEOF waits for the peer to close the stream.
func expectEOF(c net.Conn) error {
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "reset") {
			return nil
		}
		if err != nil {
			return errors.New("relay did not close its side within " + ioTimeout.String() + ": " + err.Error())
		}
	}
}

// readBindingResponse reads one framed STUN message from c and checks it
// answers req with a Binding success.
func readBindingResponse(c net.Conn, req []byte) error {
	sc := turn.NewSTUNConn(c)
	if err := sc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	n, _, err := sc.ReadFrom(buf)
	if err != nil {
		return err
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		return err
	}
	if !bytes.Equal(res.TransactionID[:], req[8:20]) || res.Type != stun.BindingSuccess {
		return errors.New("got " + describe(res) + ", want Binding success for our transaction")
	}
	return nil
}

// bindingWorks sends a Binding request and checks the success response's
// XOR-MAPPED-ADDRESS is the client's own address.
func bindingWorks(c *stunClient) error {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	res, err := c.RoundTrip(m)
	if err != nil {
		return err
	}
	if res.Type != stun.BindingSuccess {
		return errors.New("Binding: got " + describe(res))
	}
	mapped, err := xorAddr(res, stun.AttrXORMappedAddress)
	if err != nil {
		return err
	}
	if mapped != c.LocalAddr() {
		return errors.New("Binding: XOR-MAPPED-ADDRESS " + mapped.String() + ", want " + c.LocalAddr().String())
	}
	return nil
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// logDropCounters logs every drop counter by its labels (for the report).
func logDropCounters(t *testing.T, r *testRelay) {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.Contains(mf.GetName(), "drop") && !strings.Contains(mf.GetName(), "auth_fail") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			t.Logf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), m.GetCounter().GetValue())
		}
	}
}

// assertSettled waits until the goroutine and descriptor counts are back to
// at most the baseline and reports them, with every goroutine's stack, if not.
func assertSettled(t *testing.T, when string, goroutines, fds int) {
	t.Helper()
	var g, fd int
	ok := waitUntil(settleTimeout, func() bool {
		g, fd = runtime.NumGoroutine(), countFDs(t)
		return g <= goroutines && fd <= fds
	})
	if ok {
		return
	}
	if g > goroutines {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%s: %d goroutines, want at most %d (baseline) within %v; stacks:\n%s", when, g, goroutines, settleTimeout, buf)
	}
	if fd > fds {
		t.Errorf("%s: %d open descriptors, want at most %d (baseline) within %v: %s", when, fd, fds, settleTimeout, listFDs())
	}
}

// listFDs describes this process's open descriptors.
func listFDs() string {
	var b strings.Builder
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		b.WriteString(e.Name() + "->" + target + " ")
	}
	return b.String()
}

// FuzzRelayDatagram sends arbitrary bytes to a running relay over UDP and
// checks it still answers a Binding request from the same socket afterwards.
func FuzzRelayDatagram(f *testing.F) {
	f.Add(bindingRequest(f))
	f.Add(channelData(0x4000, []byte("hello")))
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 1})
	f.Add(stunHeader(0x0003, 0))
	f.Add(stunHeader(0x0003, 200))
	f.Add([]byte{})
	if m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		requestedTransportUDP(), requestedFamily(famIPv6), evenPort(true), stun.Fingerprint); err == nil {
		f.Add(m.Raw)
	}
	r := startRelay(f, nil)
	clients := map[bool]*stunClient{
		false: dialSTUN(f, "udp", r.Addr("4"), "", ""),
		true:  dialSTUN(f, "udp", r.Addr("6"), "", ""),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := clients[len(data)%2 == 1]
		if err := c.Write(data); err != nil {
			t.Skipf("datagram of %d bytes not sendable: %v", len(data), err)
		}
		if err := bindingWorks(c); err != nil {
			t.Fatalf("after %d bytes %x: %v", len(data), data[:min(len(data), 64)], err)
		}
	})
}

// FuzzRelayStream writes arbitrary bytes on a TCP connection to the relay
// and closes it; the relay must keep answering on another connection. The
// seeds include the length-wrap frames of pion/turn#593.
func FuzzRelayStream(f *testing.F) {
	for _, frame := range lengthWrapFrames {
		f.Add(frame)
	}
	f.Add(bindingRequest(f))
	f.Add(append(bindingRequest(f), channelData(0x4000, []byte("hello"))...))
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 1})
	f.Add(stunHeader(0x0003, 0xfff0))
	r := startRelay(f, nil)
	// The probes are unauthenticated, so the relay closes them after its
	// stream auth timeout (30 s): renew them well before that.
	type probe struct {
		c    *stunClient
		born time.Time
	}
	probes := map[string]*probe{}
	f.Cleanup(func() {
		for _, p := range probes {
			_ = p.c.Conn.Close()
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		fam := "4"
		if len(data)%2 == 1 {
			fam = "6"
		}
		p := probes[fam]
		if p == nil || time.Since(p.born) > 10*time.Second {
			if p != nil {
				_ = p.c.Conn.Close()
			}
			conn, err := net.DialTimeout("tcp", r.Addr(fam).String(), ioTimeout)
			if err != nil {
				t.Fatal(err)
			}
			p = &probe{c: &stunClient{T: t, Conn: conn, Server: conn.RemoteAddr(), PC: turn.NewSTUNConn(conn)}, born: time.Now()}
			probes[fam] = p
		}
		c, err := net.DialTimeout("tcp", r.Addr(fam).String(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		_ = c.Close()
		if err := bindingWorks(p.c); err != nil {
			t.Fatalf("after a stream of %d bytes %x: %v", len(data), data[:min(len(data), 64)], err)
		}
	})
}
