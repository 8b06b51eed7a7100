//go:build linux

package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// listenUDP opens a loopback UDP socket; the test fails if the family is
// missing.
func listenUDP(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func apOf(c net.PacketConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// recv reads one datagram with a bounded wait.
func recv(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// nothingWaiting asserts that c holds no datagram right now.
func nothingWaiting(t *testing.T, c *net.UDPConn) {
	t.Helper()
	buf := make([]byte, 2048)
	// A deadline slightly ahead: Go tries the read before it waits, and
	// loopback delivery is synchronous, so anything sent is already there.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, from, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("unexpected datagram on %v from %v: %q", c.LocalAddr(), from, buf[:n])
	}
}

// leg is one call leg through the plane: a client on a listener, its
// allocation's relay socket, and a peer.
type leg struct {
	client, peer *net.UDPConn
	ln, relay    *Conn
	channel      uint16
}

// TestLoopbackForwarding runs two call legs through real workers over
// loopback sockets: an IPv6 client relayed to an IPv4 peer and an IPv4 client
// relayed to an IPv6 peer, then takes a permission away. It runs once with
// client datagrams sent on the allocations' own sockets and once on the
// workers' raw sockets (root only).
func TestLoopbackForwarding(t *testing.T) {
	t.Run("udp", func(t *testing.T) { testLoopbackForwarding(t, RawSendOff) })
	t.Run("raw", func(t *testing.T) { testLoopbackForwarding(t, RawSendOn) })
}

func testLoopbackForwarding(t *testing.T, raw RawSendMode) {
	p, err := New(Config{Workers: 2, RawSend: raw})
	if raw == RawSendOn && errors.Is(err, unix.EPERM) {
		t.Skipf("raw sockets need CAP_NET_RAW (run as root; CI does): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	eh := p.EventHandler(turn.EventHandler{})

	ln6, err := p.Listener(listenUDP(t, "udp6", "[::1]:0"))
	if err != nil {
		t.Fatal(err)
	}
	ln4, err := p.Listener(listenUDP(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	mkLeg := func(clientNet, clientAddr string, ln *Conn, relayNet, relayAddr, peerAddr string, ch uint16) *leg {
		l := &leg{client: listenUDP(t, clientNet, clientAddr), peer: listenUDP(t, relayNet, peerAddr), ln: ln, channel: ch}
		r, err := p.Relay(listenUDP(t, relayNet, relayAddr), netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		l.relay = r
		src, dst := net.UDPAddrFromAddrPort(apOf(l.client)), ln.LocalAddr()
		eh.OnAllocationCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(), 0)
		eh.OnPermissionCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(), apOf(l.peer).Addr().AsSlice())
		eh.OnChannelCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(),
			net.UDPAddrFromAddrPort(apOf(l.peer)), ch)
		return l
	}
	a := mkLeg("udp6", "[::1]:0", ln6, "udp4", "127.0.0.1:0", "127.0.0.1:0", 0x4000)
	b := mkLeg("udp4", "127.0.0.1:0", ln4, "udp6", "[::1]:0", "[::1]:0", 0x4abc)

	const n = 50
	for _, l := range []*leg{a, b} {
		lnAddr := net.UDPAddrFromAddrPort(l.ln.local)
		relayAddr := net.UDPAddrFromAddrPort(l.relay.local)
		for i := range n {
			payload := fmt.Appendf(nil, "c2p %d via %v", i, l.relay.local)
			if _, err := l.client.WriteTo(channelData(l.channel, payload, 0), lnAddr); err != nil {
				t.Fatal(err)
			}
			got, from := recv(t, l.peer)
			if !bytes.Equal(got, payload) || from != l.relay.local {
				t.Fatalf("peer got %q from %v, want %q from the relayed address %v", got, from, payload, l.relay.local)
			}
			reply := fmt.Appendf(nil, "p2c %d", i)
			if _, err := l.peer.WriteTo(reply, relayAddr); err != nil {
				t.Fatal(err)
			}
			got, from = recv(t, l.client)
			if want := channelData(l.channel, reply, 0); !bytes.Equal(got, want) || from != l.ln.local {
				t.Fatalf("client got % x from %v, want % x from %v", got, from, want, l.ln.local)
			}
		}
	}
	// Counters are published at the end of a wake-up, just after the send.
	eventually(t, "per-family packet counters", func() bool {
		st := p.Stats()
		return st.Packets[ClientToPeer][1][0] == n && st.Packets[PeerToClient][1][0] == n &&
			st.Packets[ClientToPeer][0][1] == n && st.Packets[PeerToClient][0][1] == n
	})
	st := p.Stats()
	if st.SlowListener != 0 || st.SlowRelay != 0 {
		t.Fatalf("bound-channel traffic reached the slow path: listener %d relay %d", st.SlowListener, st.SlowRelay)
	}
	if raw == RawSendOn && st.RawWriteCalls == 0 || raw == RawSendOff && st.RawWriteCalls != 0 {
		t.Fatalf("raw send %v: %d sendmmsg calls on raw sockets", raw, st.RawWriteCalls)
	}
	if p.RawSending() != (raw == RawSendOn) {
		t.Fatalf("raw send %v: RawSending() = %v", raw, p.RawSending())
	}

	// Control traffic: a STUN-looking datagram reaches pion's reader, and
	// pion's reply goes out on the listener socket.
	stunReq := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if _, err := a.client.WriteTo(stunReq, ln6.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = ln6.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, from, err := ln6.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:k], stunReq) || from.String() != apOf(a.client).String() {
		t.Fatalf("pion read %q from %v (%v), want the STUN datagram from %v", buf[:k], from, err, apOf(a.client))
	}
	if _, err := ln6.WriteTo([]byte("response"), from); err != nil {
		t.Fatal(err)
	}
	if got, _ := recv(t, a.client); string(got) != "response" {
		t.Fatalf("client got %q, want response", got)
	}

	// Garbage on every socket: nothing crashes, forwarding goes on.
	for _, g := range [][]byte{{}, {0x40}, {0x40, 0x00, 0xff, 0xff}, bytes.Repeat([]byte{0xff}, 3000)} {
		_, _ = a.client.WriteTo(g, ln6.LocalAddr())
		_, _ = a.peer.WriteTo(g, a.relay.LocalAddr())
	}
	eventually(t, "garbage counted", func() bool {
		s := p.Stats()
		return s.Drops[DropMalformed] == 1 && s.Drops[DropOversized] == 2 && s.SlowListener == 3
	})
	// Whatever a permitted, bound peer sends is the peer's data: the short
	// ones reach the client framed (the 3000-byte one was too long).
	for _, g := range [][]byte{{}, {0x40}, {0x40, 0x00, 0xff, 0xff}} {
		if got, _ := recv(t, a.client); !bytes.Equal(got, channelData(a.channel, g, 0)) {
			t.Fatalf("client got % x, want % x framed", got, g)
		}
	}
	nothingWaiting(t, a.client)

	// Permission removed (pion's timer expired): both directions stop.
	src := net.UDPAddrFromAddrPort(apOf(a.client))
	eh.OnPermissionDeleted(src, ln6.LocalAddr(), "UDP", "alice", "example.org", a.relay.LocalAddr(),
		apOf(a.peer).Addr().AsSlice())
	before := p.Stats().Drops
	if _, err := a.client.WriteTo(channelData(a.channel, []byte("late"), 0), ln6.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.peer.WriteTo([]byte("late"), a.relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no_permission and to_unpermitted_peer drops", func() bool {
		d := p.Stats().Drops
		return d[DropNoPermission] == before[DropNoPermission]+1 && d[DropToUnpermittedPeer] == before[DropToUnpermittedPeer]+1
	})
	nothingWaiting(t, a.peer)
	nothingWaiting(t, a.client)

	// The other leg is unaffected.
	if _, err := b.client.WriteTo(channelData(b.channel, []byte("still"), 0), ln4.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got, _ := recv(t, b.peer); string(got) != "still" {
		t.Fatalf("leg b after leg a lost its permission: %q", got)
	}

	// Closing a relay socket ends pion's reader and frees the address.
	if err := a.relay.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.relay.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom on closed relay: %v", err)
	}
	if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a.relay.local)); err != nil {
		t.Fatalf("relay address still in use after Close: %v", err)
	} else {
		_ = c.Close()
	}
}

// TestLoopbackClose checks that a plane with live sockets closes cleanly
// and that its workers exit.
func TestLoopbackClose(t *testing.T) {
	p, err := New(Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listener(listenUDP(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Relay(listenUDP(t, "udp4", "127.0.0.1:0"), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := ln.ReadFrom(make([]byte, 100))
		errc <- err
	}()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range p.workers {
		<-w.exited
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom after plane Close: %v", err)
	}
	if _, err := r.WriteTo([]byte("x"), ln.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after plane Close: %v", err)
	}
	if _, err := p.Listener(listenUDP(t, "udp4", "127.0.0.1:0")); !errors.Is(err, ErrClosed) {
		t.Fatalf("adopt after Close: %v", err)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestLoopbackChurn opens and closes relay sockets (allocations) while a
// steady leg streams through the same workers: the steady leg gets every
// datagram intact, no descriptor leaks, and closing never hangs.
func TestLoopbackChurn(t *testing.T) {
	fdsBefore := openFDs(t)
	p, err := New(Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	eh := p.EventHandler(turn.EventHandler{})
	ln, err := p.Listener(listenUDP(t, "udp4", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	client := listenUDP(t, "udp4", "127.0.0.1:0")
	peer := listenUDP(t, "udp4", "127.0.0.1:0")
	bind := func(c *net.UDPConn, r *Conn) {
		src := net.UDPAddrFromAddrPort(apOf(c))
		eh.OnAllocationCreated(src, ln.LocalAddr(), "UDP", "u", "r", r.LocalAddr(), 0)
		eh.OnPermissionCreated(src, ln.LocalAddr(), "UDP", "u", "r", r.LocalAddr(), net.IPv4(127, 0, 0, 1))
		eh.OnChannelCreated(src, ln.LocalAddr(), "UDP", "u", "r", r.LocalAddr(), peer.LocalAddr(), 0x4000)
	}
	steady, err := p.Relay(listenUDP(t, "udp4", "127.0.0.1:0"), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	bind(client, steady)

	const rounds = 100
	done := make(chan error, 1)
	go func() { // churn: allocations come and go, some with traffic
		churnClient, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			done <- err
			return
		}
		defer churnClient.Close()
		for i := range rounds {
			rs, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				done <- err
				return
			}
			r, err := p.Relay(rs, netip.AddrPort{})
			if err != nil {
				done <- err
				return
			}
			bind(churnClient, r)
			_, _ = churnClient.WriteTo(channelData(0x4000, fmt.Appendf(nil, "churn %d", i), 0), ln.LocalAddr())
			src := net.UDPAddrFromAddrPort(apOf(churnClient))
			eh.OnAllocationDeleted(src, ln.LocalAddr(), "UDP", "u", "r")
			if err := r.Close(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()

	relayed := steady.local
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for _, w := range p.workers {
				<-w.exited
			}
			// The test's own sockets close in Cleanup; the plane's are gone.
			if n := openFDs(t); n > fdsBefore+8 {
				t.Errorf("%d descriptors open after Close, %d before (test sockets: 4)", n, fdsBefore)
			}
			return
		default:
		}
		msg := fmt.Appendf(nil, "steady %d", i)
		if _, err := client.WriteTo(channelData(0x4000, msg, 0), ln.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		// The peer also receives the churn legs' datagrams; find ours.
		for {
			got, from := recv(t, peer)
			if from == relayed {
				if !bytes.Equal(got, msg) {
					t.Fatalf("steady leg got %q, want %q", got, msg)
				}
				break
			}
			if !bytes.HasPrefix(got, []byte("churn ")) {
				t.Fatalf("peer got %q from %v", got, from)
			}
		}
	}
}
