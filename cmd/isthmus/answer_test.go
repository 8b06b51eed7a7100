package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/sdpcand"
)

const echoCount = 50

// firstWrite hands the first Write (the answer SDP) to a channel and
// keeps everything.
type firstWrite struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan []byte
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() == 0 {
		w.first <- append([]byte(nil), p...)
	}
	return w.buf.Write(p)
}

// lockedBuffer is a goroutine-safe buffer for a command's output.
type lockedBuffer = lockedbuf.Buffer

// startAnswer runs "isthmus answer --offer FILE --serve ..." and returns
// the answer SDP, a channel with the exit code, and its stderr.
func startAnswer(t *testing.T, offer []byte, args ...string) ([]byte, chan int, *lockedBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "offer.sdp")
	if err := os.WriteFile(path, offer, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &firstWrite{first: make(chan []byte, 1)}
	errs := &lockedBuffer{}
	code := make(chan int, 1)
	go func() { code <- runAnswer(append([]string{"--offer", path}, args...), out, errs) }()
	select {
	case ans := <-out.first:
		return ans, code, errs
	case c := <-code:
		t.Fatalf("answer exited %d before answering: %s", c, errs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer within 10 s: %s", errs.String())
	}
	return nil, nil, nil
}

// echoRTP sends echoCount packets on c and expects each one back.
func echoRTP(t *testing.T, c net.Conn) {
	t.Helper()
	buf := make([]byte, 1500)
	for i := range echoCount {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), SSRC: 0xec40}, Payload: make([]byte, 160)}
		b, _ := pkt.Marshal()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		var got rtp.Packet
		if err := got.Unmarshal(buf[:n]); err != nil || got.SequenceNumber != uint16(i) {
			t.Fatalf("echo %d: got seq %d, %v", i, got.SequenceNumber, err)
		}
	}
}

func waitExit(t *testing.T, code chan int, errs *lockedBuffer) {
	t.Helper()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("answer exited %d: %s", c, errs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("answer --serve did not end")
	}
	want := fmt.Sprintf("rtp: received %d echoed %d", echoCount, echoCount)
	if !strings.Contains(errs.String(), want) {
		t.Errorf("stderr %q lacks %q", errs.String(), want)
	}
}

// TestAnswerCommandEchoICE: an SDK agent offers, "isthmus answer --serve"
// answers, ICE connects and every RTP packet comes back.
func TestAnswerCommandEchoICE(t *testing.T) {
	off, err := gather.NewAgent(gather.Config{HostAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = off.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offer, err := off.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answer, code, errs := startAnswer(t, offer, "--host", "127.0.0.1", "--host", "::1", "--serve", "3s")
	if err := off.SetRemoteAnswer(answer); err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	media, err := off.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v (answerer: %s)", err, errs.String())
	}
	echoRTP(t, media)
	waitExit(t, code, errs)
	if !strings.Contains(errs.String(), "path: ice host/") {
		t.Errorf("stderr lacks the ICE path: %s", errs.String())
	}
}

// TestAnswerCommandEchoLegacy: a plain UDP "phone" without ICE offers
// c=IN IP4; the answer is IP4 (RFC 6157 §4.1 rule 2) and the echo comes
// from the answer's c=/m= address.
func TestAnswerCommandEchoLegacy(t *testing.T) {
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = phone.Close() })
	offer := fmt.Sprintf("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
		phone.LocalAddr().(*net.UDPAddr).Port)
	answer, code, errs := startAnswer(t, []byte(offer), "--host", "127.0.0.1", "--host", "::1", "--serve", "2s")
	sess, err := sdpcand.Parse(answer)
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, answer)
	}
	m := sess.Media[0]
	if m.NetType != "IP4" || !m.Addr.IsValid() {
		t.Fatalf("RFC 6157 4.1 rule 2: answer c= %s %s, want IP4\n%s", m.NetType, m.Address, answer)
	}
	// The phone sends from the port it announced (symmetric RTP).
	echoRTP(t, &phoneConn{UDPConn: phone, peer: netip.AddrPortFrom(m.Addr, uint16(m.Port))})
	waitExit(t, code, errs)
	if !strings.Contains(errs.String(), "path: legacy-direct host/IPv4 -> legacy/IPv4") {
		t.Errorf("stderr lacks the legacy path: %s", errs.String())
	}
}

type phoneConn struct {
	*net.UDPConn
	peer netip.AddrPort
}

func (c *phoneConn) Write(p []byte) (int, error) { return c.WriteToUDPAddrPort(p, c.peer) }

func (c *phoneConn) Read(p []byte) (int, error) {
	n, _, err := c.ReadFromUDPAddrPort(p)
	return n, err
}

func TestAnswerCommandUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runAnswer(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--offer") {
		t.Errorf("no --offer: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := runAnswer([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "usage: isthmus answer") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	path := filepath.Join(t.TempDir(), "v6.sdp")
	_ = os.WriteFile(path, []byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"), 0o600)
	if code := runAnswer([]string{"--offer", path, "--host", "127.0.0.1", "--family", "4"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "answer:") {
		t.Errorf("RFC 6157 4.1 rule 2: IPv4-only agent answering an IP6 offer: exit %d, %q", code, errb.String())
	}
}
