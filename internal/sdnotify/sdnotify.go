// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): newline-separated VAR=value assignments in one datagram on
// the AF_UNIX SOCK_DGRAM socket named by $NOTIFY_SOCKET. A service of
// Type=notify tells systemd READY=1 when it serves, RELOADING=1 (with
// MONOTONIC_USEC, systemd 253's Type=notify-reload contract) while it
// reloads, STOPPING=1 when it begins to stop, and WATCHDOG=1 at least every
// $WATCHDOG_USEC.
//
// It is a few lines over the standard library so the binary stays static
// and cgo-free (libsystemd's sd_notify would need cgo).
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends notifications to one socket. The zero value and a nil
// *Notifier send nothing (not run by systemd).
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil when it is unset.
// A name starting with '@' is an abstract socket (sd_notify(3)).
func FromEnv() (*Notifier, error) {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New returns a Notifier for the socket path (or "@abstract" name), nil
// for "".
func New(path string) (*Notifier, error) {
	if path == "" {
		return nil, nil
	}
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither a path nor an abstract name", path)
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the assignments (e.g. "READY=1", "STATUS=serving") in one
// datagram. It does nothing on a nil Notifier.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("sdnotify: %q is not one VAR=value line", a)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Ready says the service serves.
func (n *Notifier) Ready(status string) error {
	return n.Notify("READY=1", "STATUS="+status)
}

// Reloading says a reload began; send Ready when it is done. systemd
// requires MONOTONIC_USEC, CLOCK_MONOTONIC now, with RELOADING=1 to tell this
// reload from an older one.
func (n *Notifier) Reloading() error {
	return n.Notify("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Stopping says the service is shutting down (draining).
func (n *Notifier) Stopping(status string) error {
	return n.Notify("STOPPING=1", "STATUS="+status)
}

// Watchdog pings the service watchdog.
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1_000_000 + ts.Nsec/1_000
}

// ErrNoWatchdog is returned by WatchdogInterval when no watchdog is set for
// this process.
var ErrNoWatchdog = errors.New("sdnotify: no watchdog")

// WatchdogInterval returns $WATCHDOG_USEC when it is meant for this process
// ($WATCHDOG_PID unset or our pid), as sd_watchdog_enabled(3) does. Ping at
// half of it.
func WatchdogInterval() (time.Duration, error) {
	us := os.Getenv("WATCHDOG_USEC")
	if us == "" {
		return 0, ErrNoWatchdog
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, ErrNoWatchdog
	}
	v, err := strconv.ParseInt(us, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC %q is not a positive number", us)
	}
	return time.Duration(v) * time.Microsecond, nil
}
