//go:build linux

package siplocate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/siplocate"
)

// synBlackhole listens on [::1]:port with a backlog of 0, never accepts, and
// fills the accept queue: Linux then drops further SYNs (tcp_conn_request,
// "listen overflow"), so a connect to it hangs like one into a dead
// network, yet nothing leaves loopback.
func synBlackhole(t *testing.T, port int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("::1", strconv.Itoa(port))
	for range 8 {
		c, err := net.DialTimeout("tcp6", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // full: SYNs are dropped now
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Skip("could not fill the accept queue; SYN drop on overflow not available")
}

// TestDialSYNBlackholeFamily: RFC 8305 §5 with IPv6 silently dropping
// SYNs. The IPv6 attempt hangs; one Connection Attempt Delay later the
// IPv4 attempt starts and wins; the hung attempt is cancelled.
func TestDialSYNBlackholeFamily(t *testing.T) {
	port, l4 := samePort(t)
	acceptAll(l4, func(c net.Conn) { _ = c.Close() })
	synBlackhole(t, port)
	z := heZone(t, port)
	logs := &recordHandler{}
	d := &siplocate.Dialer{
		Resolver:     &siplocate.Resolver{Server: z.Addr},
		AttemptDelay: 50 * time.Millisecond,
		Logger:       slog.New(logs),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, tg, err := d.Dial(ctx, "tcp", "sip:he.example.test;transport=tcp")
	if err != nil {
		t.Fatalf("Dial: %v (attempts %v)", err, logs.attempts())
	}
	defer c.Close()
	want := []string{
		fmt.Sprintf("connection attempt n=1 target=tcp [::1]:%d", port),
		fmt.Sprintf("connection attempt n=2 target=tcp 127.0.0.1:%d", port),
		fmt.Sprintf("connected n=2 target=tcp 127.0.0.1:%d", port),
	}
	if got := logs.attempts(); !prefixesMatch(got, want) || !tg.AddrPort.Addr().Is4() {
		t.Errorf("winner %v, attempts:\n got  %q\n want %q", tg, got, want)
	}
}
