package netns

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// newRun returns a run that is closed when the test ends, or skips the test
// when namespaces cannot be made here.
func newRun(t *testing.T) *Run {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root: run `sudo go test ./internal/netns/` (CI runs as root)")
	}
	run, err := NewRun()
	if errors.Is(err, ErrNoIproute2) {
		t.Skip("iproute2 (the ip command) is not installed: apt-get install iproute2")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run.Close(); err != nil {
			t.Errorf("close run: %v", err)
		}
	})
	return run
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pair builds a - b over one veth with an address of each given prefix on
// both ends: aAddrs[i] on a, bAddrs[i] on b.
func pair(t *testing.T, run *Run, aAddrs, bAddrs []netip.Prefix) (*Namespace, *Namespace) {
	t.Helper()
	a, b, err := run.Pair(testContext(t), "a", "b", aAddrs, bAddrs)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// roundTrip fails the test unless a and b reach each other both ways.
func roundTrip(t *testing.T, a *Namespace, aAddr netip.Addr, b *Namespace, bAddr netip.Addr) {
	t.Helper()
	if err := UDPRoundTrip(a, aAddr, b, bAddr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestVethCarriesBothFamilies(t *testing.T) {
	run := newRun(t)
	a, b := pair(t, run,
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.2/24"), netip.MustParsePrefix("2001:db8:1::2/64")})
	roundTrip(t, a, netip.MustParseAddr("198.51.100.1"), b, netip.MustParseAddr("198.51.100.2"))
	roundTrip(t, a, netip.MustParseAddr("2001:db8:1::1"), b, netip.MustParseAddr("2001:db8:1::2"))
}

func TestMissingFamilyIsUnreachable(t *testing.T) {
	run := newRun(t)
	ctx := testContext(t)
	a, b := pair(t, run,
		[]netip.Prefix{netip.MustParsePrefix("2001:db8:1::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("2001:db8:1::2/64")})
	// a keeps no IPv4 address at all, not even on loopback.
	if err := a.DelAddr(ctx, "lo", netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"198.51.100.2:9", "127.0.0.1:9", "192.0.2.1:9"} {
		err := a.SendUDP(netip.MustParseAddrPort(dst))
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("IPv6-only namespace sending to %s: got %v, want ENETUNREACH", dst, err)
		}
	}
	if got, err := a.Addrs(ctx, 4); err != nil || len(got) != 0 {
		t.Errorf("IPv4 addresses in the IPv6-only namespace: %v %v", got, err)
	}
	roundTrip(t, a, netip.MustParseAddr("2001:db8:1::1"), b, netip.MustParseAddr("2001:db8:1::2"))
}

func TestSysctlIsPerNamespace(t *testing.T) {
	run := newRun(t)
	ctx := testContext(t)
	a, err := run.Namespace(ctx, "v4only")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.ReadSysctl("net.ipv6.conf.all.disable_ipv6"); err != nil || v != "1" {
		t.Fatalf("in namespace: disable_ipv6=%q %v, want 1", v, err)
	}
	root, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	if err != nil {
		t.Fatal(err)
	}
	// The root namespace's own value must not have been touched; a test
	// machine with IPv6 off globally would read "1" here, so compare with a
	// fresh namespace instead of a constant.
	b, err := run.Namespace(ctx, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := b.ReadSysctl("net.ipv6.conf.all.disable_ipv6")
	if err != nil {
		t.Fatal(err)
	}
	if fresh == "1" && string(root[:1]) == "0" {
		t.Errorf("sysctl leaked into a fresh namespace")
	}
}

func TestCloseRemovesNamespacesAndProcesses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root: run `sudo go test ./internal/netns/` (CI runs as root)")
	}
	ctx := testContext(t)
	run, err := NewRun()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run.Close() })
	a, err := run.Namespace(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Namespace(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// A process still running inside must not keep the namespace alive.
	cmd := a.Command(ctx, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	if err := run.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("process inside the namespace survived Close")
	}
	names, err := List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if len(n) > len(Prefix) && n[len(Prefix):len(Prefix)+len(run.ID)] == run.ID {
			t.Errorf("namespace %s left after Close", n)
		}
	}
	if _, err := run.Namespace(ctx, "late"); err == nil {
		t.Error("Namespace after Close succeeded")
	}
}

func TestSweepDeletesOnlyDeadRuns(t *testing.T) {
	run := newRun(t)
	ctx := testContext(t)
	live, err := run.Namespace(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	// A pid that surely belonged to a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := Prefix + strconv.Itoa(dead.ProcessState.Pid()) + "-abcdef-relay"
	if _, err := runIP(ctx, run.ip, "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = runIP(context.Background(), run.ip, "netns", "del", stale) })

	deleted, err := Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deleted, stale) {
		t.Errorf("Sweep deleted %v, want it to include %s", deleted, stale)
	}
	names, err := List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, live.Name) {
		t.Errorf("Sweep deleted the live namespace %s", live.Name)
	}
	if slices.Contains(names, stale) {
		t.Errorf("stale namespace %s still listed", stale)
	}
}

func TestOwnerPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"isthmus-1234-a1b2c3-relay", 1234, true},
		{"isthmus-1234-a1b2c3-ds-1", 1234, true},
		{"isthmus-x-a1b2c3-relay", 0, false},
		{"isthmus-0-a1b2c3-relay", 0, false},
		{"isthmus-1234", 0, false},
		{"other-1234-a1b2c3-relay", 0, false},
	} {
		pid, ok := ownerPID(tc.name)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

// TestFailedAddIsCleanedUp: a Namespace call that fails may still have made
// its namespace (an `ip netns add` killed by Ctrl-C midway); Close removes
// it, and a namespace that was never made is no error.
func TestFailedAddIsCleanedUp(t *testing.T) {
	run := newRun(t)
	ctx := testContext(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := run.Namespace(cancelled, "never"); err == nil {
		t.Fatal("Namespace with a cancelled context succeeded")
	}
	// Made behind the run's back under the name it is about to use: its
	// own `ip netns add` then fails, as after a kill that came too late.
	made := Prefix + run.ID + "-made"
	if out, err := exec.Command("ip", "netns", "add", made).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", made, err, out)
	}
	if _, err := run.Namespace(ctx, "made"); err == nil {
		t.Fatal("Namespace over an existing name succeeded")
	}
	if err := run.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	names, err := List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, made) {
		_ = exec.Command("ip", "netns", "del", made).Run()
		t.Errorf("namespace %s left after Close", made)
	}
}
