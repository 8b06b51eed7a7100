// Package netnstest gives a test its own netns.Run: skipped with a clear
// message where namespaces cannot be made (not root, no iproute2), closed
// when the test ends, and checked to have left no namespace behind.
package netnstest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

// NewRun returns a Run for t, or skips t when network namespaces cannot be
// made here. At the end of t the Run is closed and any namespace of it
// still present is an error.
func NewRun(t testing.TB) *netns.Run {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to build network namespaces (ip netns + veth): run the tests as root, as CI does")
	}
	run, err := netns.NewRun()
	if errors.Is(err, netns.ErrNoIproute2) {
		t.Skip("needs iproute2 (the ip command): apt-get install iproute2")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run.Close(); err != nil {
			t.Errorf("netns teardown: %v", err)
		}
		names, err := netns.List(context.Background())
		if err != nil {
			t.Errorf("netns teardown: %v", err)
		}
		for _, n := range names {
			if strings.Contains(n, run.ID) {
				t.Errorf("netns teardown left namespace %s", n)
			}
		}
	})
	return run
}
