package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has joined the namespace, then returns the
// thread to the namespace it came from. Only what fn does synchronously on
// that thread happens inside: a socket created there stays in the namespace
// for its whole life, but goroutines fn starts do not. Keep fn to plain
// system calls (socket, bind, open): Go's net package probes the host's
// IPv4/IPv6 support once per process, and must not do it in here.
func (ns *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocking on a failed restore makes the runtime retire this
		// thread when the goroutine ends, instead of reusing it elsewhere.
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("netns: %s: open own namespace: %w", ns.Name, err)
			restored = true
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsRunDir, ns.Name))
		if err != nil {
			errc <- fmt.Errorf("netns: %s: open: %w", ns.Name, err)
			restored = true
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: %s: setns: %w", ns.Name, err)
			restored = true
			return
		}
		ferr := fn()
		restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket inside the namespace bound to laddr (port 0
// for an ephemeral port; an unspecified address for a wildcard socket of
// that family). IPv6 sockets are v6-only.
func (ns *Namespace) ListenUDP(laddr netip.AddrPort) (*net.UDPConn, error) {
	fd, err := ns.socket(laddr.Addr(), unix.SOCK_DGRAM)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sockaddr(laddr)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %s: bind udp %s: %w", ns.Name, laddr, err)
	}
	f := os.NewFile(uintptr(fd), "udp "+laddr.String())
	defer f.Close() // FilePacketConn holds its own duplicate
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("netns: %s: udp %s: %w", ns.Name, laddr, err)
	}
	return pc.(*net.UDPConn), nil
}

// DialTCP connects a TCP socket created inside the namespace to raddr, for
// instance to read a metrics page served on an address only the namespace
// can reach. ctx's deadline bounds the connect.
func (ns *Namespace) DialTCP(ctx context.Context, raddr netip.AddrPort) (net.Conn, error) {
	fd, err := ns.socket(raddr.Addr(), unix.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %s: dial tcp %s: %w", ns.Name, raddr, context.DeadlineExceeded)
	}
	// A blocking connect honours SO_SNDTIMEO.
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %s: dial tcp %s: SO_SNDTIMEO: %w", ns.Name, raddr, err)
	}
	if err := unix.Connect(fd, sockaddr(raddr)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns: %s: dial tcp %s: %w", ns.Name, raddr, err)
	}
	f := os.NewFile(uintptr(fd), "tcp "+raddr.String())
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("netns: %s: tcp %s: %w", ns.Name, raddr, err)
	}
	return c, nil
}

// ReadProcNet returns /proc/net/<name> as the namespace sees it ("snmp",
// "snmp6", "udp", ...): per-namespace kernel counters, whatever program
// runs inside.
func (ns *Namespace) ReadProcNet(name string) ([]byte, error) {
	var b []byte
	err := ns.Do(func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/" + name)
		if err != nil {
			return fmt.Errorf("netns: %s: read /proc/net/%s: %w", ns.Name, name, err)
		}
		return nil
	})
	return b, err
}

func (ns *Namespace) socket(a netip.Addr, typ int) (int, error) {
	domain := unix.AF_INET
	if a.Is6() {
		domain = unix.AF_INET6
	}
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netns: %s: socket: %w", ns.Name, err)
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("netns: %s: IPV6_V6ONLY: %w", ns.Name, err)
		}
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
