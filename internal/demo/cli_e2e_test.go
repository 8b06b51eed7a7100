//go:build e2e

package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/internal/netns"
)

// ownNamespaces lists the namespaces whose names say process pid made them.
func ownNamespaces(t *testing.T, pid int) []string {
	t.Helper()
	names, err := netns.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%s%d-", netns.Prefix, pid)
	var own []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			own = append(own, n)
		}
	}
	return own
}

// TestDemoCommand runs `isthmus demo` itself on a short call: the table,
// the picture and the exit code.
func TestDemoCommand(t *testing.T) {
	skipUnlessRoot(t)
	bin := isthmusBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "demo", "--scenarios", "2", "--packets", "50", "--interval", "2ms")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("isthmus demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"SCENARIO", "legacy4 -IPv4-> relay -IPv6-> ua6", " 200 ", "0.0%", "PASS",
		"answer c=IN IP4 192.0.2.1 m=", "Allocate over IPv6 to [2001:db8::1]:3478", "100 RTP -> 100",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if left := ownNamespaces(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("namespaces left after the demo: %v", left)
	}
}

// TestDemoCommandInterrupted sends Ctrl-C (SIGINT) while the calls run:
// the demo must fail and still remove every namespace it made.
func TestDemoCommandInterrupted(t *testing.T) {
	skipUnlessRoot(t)
	bin := isthmusBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Read while the process writes: a buffer with a lock.
	stdout, stderr := &lockedbuf.Buffer{Max: 1 << 20}, &lockedbuf.Buffer{Max: 1 << 20}
	cmd := exec.CommandContext(ctx, bin, "demo", "--scenarios", "1,2", "--packets", "5000")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	// Wait, bounded, until both scenarios' namespaces (4 each) exist.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "running scenarios") || len(ownNamespaces(t, cmd.Process.Pid)) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("demo did not build its namespaces in time; stderr:\n%s", stderr.String())
		}
		select {
		case err := <-waited:
			t.Fatalf("demo exited early: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		t.Fatal("demo did not exit after SIGINT")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit after SIGINT: %v, want status 1", err)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr.String())
	}
	if left := ownNamespaces(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("namespaces left after SIGINT: %v", left)
	}
}
