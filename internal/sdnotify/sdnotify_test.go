package sdnotify

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/sdnotify/sdnotifytest"
)

func TestNotify(t *testing.T) {
	path, recv := sdnotifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	n, err := FromEnv()
	if err != nil || !n.Enabled() {
		t.Fatalf("FromEnv() = %v, %v", n, err)
	}
	if err := n.Ready("serving"); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "READY=1\nSTATUS=serving" {
		t.Errorf("ready: got %q", got)
	}
	before := monotonicUsec()
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	got := recv()
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("reloading: got %q", got)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || us < before || us > before+10_000_000 {
		t.Errorf("MONOTONIC_USEC %q not CLOCK_MONOTONIC now (%d)", lines[1], before)
	}
	if err := n.Stopping("draining"); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "STOPPING=1\nSTATUS=draining" {
		t.Errorf("stopping: got %q", got)
	}
	if err := n.Watchdog(); err != nil {
		t.Fatal(err)
	}
	if got := recv(); got != "WATCHDOG=1" {
		t.Errorf("watchdog: got %q", got)
	}
	if err := n.Notify("bad\nline=1"); err == nil {
		t.Error("a newline inside an assignment was sent")
	}
}

func TestNotifyDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if err != nil || n.Enabled() {
		t.Fatalf("FromEnv() with no socket = %v, %v", n, err)
	}
	if err := n.Ready("x"); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
	if _, err := New("relative/path"); err == nil {
		t.Error("a relative NOTIFY_SOCKET was accepted")
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := "@isthmus-sdnotify-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract unix sockets: %v", err)
	}
	defer c.Close()
	n, _ := New(name)
	if err := n.Watchdog(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	k, err := c.Read(buf)
	if err != nil || string(buf[:k]) != "WATCHDOG=1" {
		t.Errorf("abstract socket got %q, %v", buf[:k], err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	if _, err := WatchdogInterval(); err != ErrNoWatchdog {
		t.Errorf("unset: %v", err)
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "1")
	if _, err := WatchdogInterval(); err != ErrNoWatchdog {
		t.Errorf("another pid's watchdog: %v", err)
	}
	t.Setenv("WATCHDOG_PID", "")
	if d, err := WatchdogInterval(); err != nil || d != 30*time.Second {
		t.Errorf("WatchdogInterval() = %v, %v; want 30s", d, err)
	}
	t.Setenv("WATCHDOG_USEC", "soon")
	if _, err := WatchdogInterval(); err == nil {
		t.Error("a bad WATCHDOG_USEC was accepted")
	}
}
