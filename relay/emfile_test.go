//go:build linux

package relay_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/relay"
)

const emfileChildEnv = "ISTHMUS_TEST_EMFILE_CHILD"

// Out of descriptors, accept fails with EMFILE. pion's accept loop ends at
// the first error, leaving the TCP port bound and dead for good; the relay
// must report the listener not ready and serve again once descriptors are
// free. The relay runs in a child process whose descriptor limit the test
// lowers, so the test process itself is not starved.
func TestAcceptRecoversFromEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) != "" {
		emfileChild(t)
		return
	}
	waitLine := startFDChild(t, "TestAcceptRecoversFromEMFILE", emfileChildEnv)
	addr := waitLine("addr ", 20*time.Second)

	var conns []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.DialTimeout("tcp", addr, ioTimeout)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	if got := waitLine("ready: listener", 10*time.Second); !strings.Contains(got, "too many open files") {
		t.Errorf("Ready() while out of descriptors: %q, want the listener's EMFILE", got)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	waitLine("ready: ok", 10*time.Second)
	c := dialSTUN(t, "tcp", netip.MustParseAddrPort(addr), testUser, testPassword)
	c.MustAllocate()
}

// emfileChild runs the relay with few spare descriptors and prints its TCP
// address, then its readiness every 50 ms until stdin closes.
func emfileChild(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.ListenerSockets = 1 })
	limitFDs(t, 12)
	fmt.Printf("addr %s\n", r.Addr("4"))
	everyTickUntilStdinCloses(func() {
		if err := r.Server.Ready(); err != nil {
			fmt.Printf("ready: %v\n", err)
		} else {
			fmt.Println("ready: ok")
		}
	})
}

// everyTickUntilStdinCloses runs fn every 50 ms in a child of
// startFDChild until the parent closes the child's stdin.
func everyTickUntilStdinCloses(fn func()) {
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			fn()
		}
	}
}

// startFDChild runs the test name again in a child process with env set:
// there the relay lowers its own descriptor limit (limitFDs), so the test
// process itself is not starved. It returns a wait for the first line of
// the child's stdout with a prefix; the child is stopped (stdin closed,
// then killed) at cleanup.
func startFDChild(t *testing.T, name, env string) func(prefix string, timeout time.Duration) string {
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(prefix string, timeout time.Duration) string {
		t.Helper()
		deadline := time.After(timeout)
		last := ""
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child exited before printing %q (last line %q)", prefix, last)
				}
				if strings.HasPrefix(l, prefix) {
					return strings.TrimPrefix(l, prefix)
				}
				last = l
			case <-deadline:
				t.Fatalf("child did not print %q within %v; its last line: %q", prefix, timeout, last)
			}
		}
	}
	return waitLine
}

// limitFDs sets the descriptor limit to what is open plus spare. Some of
// the relay's descriptors are opened by goroutines that may still be
// starting on a loaded machine; a limit set before they are open would
// leave the listener no descriptor to recover with, so it waits until the
// count has settled.
func limitFDs(t *testing.T, spare int) {
	open := countFDs(t)
	for settled := 0; settled < 3; {
		time.Sleep(50 * time.Millisecond)
		if n := countFDs(t); n != open {
			open, settled = n, 0
		} else {
			settled++
		}
	}
	lim := syscall.Rlimit{Cur: uint64(open + spare), Max: uint64(open + spare)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}
