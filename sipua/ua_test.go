package sipua

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/gather"
)

func newTestUA(t *testing.T, user string, addr netip.Addr, onInvite func(*Incoming)) *UA {
	t.Helper()
	host := addr.String()
	if addr.Is6() {
		host = "[" + host + "]"
	}
	u, err := New(Config{
		AOR:      "sip:" + user + "@" + host,
		Listen:   netip.AddrPortFrom(addr, 0),
		OnInvite: onInvite,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

func newLoopbackAgent(t *testing.T, addr netip.Addr) *gather.Agent {
	t.Helper()
	a, err := gather.NewAgent(gather.Config{HostAddrs: []netip.Addr{addr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("gather.NewAgent: %v", err)
	}
	return a
}

// TestCallLoopback: A calls B directly over IPv6 loopback: INVITE with
// A's gather offer, B answers with its agent, ICE connects, RTP is echoed,
// A hangs up and B's call ends.
func TestCallLoopback(t *testing.T) {
	lo := netip.MustParseAddr("::1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	answered := make(chan *Call, 1)
	b := newTestUA(t, "bob", lo, func(in *Incoming) {
		_ = in.Ring()
		c, err := in.Answer(ctx, newLoopbackAgent(t, lo))
		if err != nil {
			t.Errorf("Answer: %v", err)
			close(answered)
			return
		}
		answered <- c
	})
	a := newTestUA(t, "alice", lo, nil)
	if !strings.Contains(a.Contact(), "[::1]:") {
		t.Fatalf("Contact %q: want a bracketed IPv6 host", a.Contact())
	}

	call, err := a.Dial(ctx, "sip:bob@"+netip.AddrPortFrom(lo, b.LocalAddr().Port()).String(), newLoopbackAgent(t, lo))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	bc := <-answered
	if bc == nil {
		t.Fatal("no answered call")
	}
	if got := call.Media().Selected().Mode; got != gather.ModeICE {
		t.Errorf("caller path mode %q, want %q", got, gather.ModeICE)
	}

	// Echo on B, count on A.
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := bc.Media().Read(buf)
			if err != nil {
				return
			}
			_, _ = bc.Media().Write(buf[:n])
		}
	}()
	const n = 50
	got := 0
	buf := make([]byte, 1500)
	for i := 0; i < n; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), SSRC: 1}, Payload: make([]byte, 160)}
		if err := call.Media().WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
		_ = call.Media().SetReadDeadline(time.Now().Add(time.Second))
		if _, err := call.Media().Read(buf); err == nil {
			got++
		}
	}
	if got < n-1 {
		t.Errorf("echoed %d of %d RTP packets", got, n)
	}

	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	select {
	case <-bc.Done():
	case <-ctx.Done():
		t.Fatal("callee's call did not end after BYE")
	}
	_ = bc.Hangup(ctx)
}

// TestDialCancel: the callee rings and never answers; the caller's
// context ends, sipgo sends CANCEL, the callee sees Cancelled.
func TestDialCancel(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cancelled := make(chan struct{})
	b := newTestUA(t, "bob", lo, func(in *Incoming) {
		_ = in.Ring()
		select {
		case <-in.Cancelled():
			close(cancelled)
		case <-ctx.Done():
		}
	})
	a := newTestUA(t, "alice", lo, nil)
	dctx, dcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer dcancel()
	agent := newLoopbackAgent(t, lo)
	defer agent.Close()
	_, err := a.Dial(dctx, "sip:bob@"+b.LocalAddr().String(), agent)
	if err == nil {
		t.Fatal("Dial succeeded, want cancelled")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatalf("callee never saw the CANCEL (Dial: %v)", err)
	}
}

// TestBadContactRefused: sipgo accepts "[zzzz]" as a host; the UA answers
// 400 (RFC 5118 §4.2 spirit: only a valid IPv6 reference in brackets).
func TestBadContactRefused(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	called := false
	b := newTestUA(t, "bob", lo, func(*Incoming) { called = true })
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(b.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	la := c.LocalAddr().String()
	msg := "INVITE sip:bob@" + b.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bKbad1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:eve@example.org>;tag=1\r\n" +
		"To: <sip:bob@example.org>\r\n" +
		"Call-ID: bad-contact-1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:eve@[zzzz]:5060>\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if strings.HasPrefix(line, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(line, "SIP/2.0 400 ") {
			t.Fatalf("response %q, want 400", line)
		}
		if !strings.Contains(line, "Contact host") {
			t.Errorf("reason %q does not name the Contact host", line)
		}
		break
	}
	if called {
		t.Error("OnInvite was called for a refused INVITE")
	}
}
