// Package sdnotifytest stands in for systemd's notification socket in
// tests of programs that speak the sd_notify protocol.
package sdnotifytest

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// Listen opens a unixgram socket where NOTIFY_SOCKET would point and
// returns its path and a receive function that returns the next datagram,
// failing the test after 10 s without one. The socket closes at cleanup.
func Listen(t testing.TB) (path string, recv func() string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("notify socket: %v", err)
		}
		return string(buf[:n])
	}
}
