package relay

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// rcvbuf is the receive buffer the kernel granted c (Linux reports twice
// the size asked for).
func rcvbuf(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// TestRelaySocketBuffer: allocations' relay sockets are bound with
// relay_recv_buffer, not the listeners' recv_buffer.
func TestRelaySocketBuffer(t *testing.T) {
	const relayBuf = 96 << 10
	s := startTestServer(t, func(c *Config) { c.RecvBuffer, c.RelayRecvBuffer = 1<<20, relayBuf })
	if s.gen.bufs.recv != relayBuf {
		t.Fatalf("relay sockets are asked for %d bytes, want relay_recv_buffer %d", s.gen.bufs.recv, relayBuf)
	}
	c, err := listenRelayUDP(netip.MustParseAddr("127.0.0.1"), 0, s.gen.bufs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Unprivileged, the kernel caps a request at net.core.rmem_max; the
	// socket must still not get more than it asked for.
	if got := rcvbuf(t, c); got > 2*relayBuf || (os.Geteuid() == 0 && got != 2*relayBuf) {
		t.Fatalf("relay socket SO_RCVBUF = %d, want %d (twice %d)", got, 2*relayBuf, relayBuf)
	}
}
