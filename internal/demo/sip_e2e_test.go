//go:build e2e

package demo

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestRunSIP runs "isthmus demo --sip": the IPv6-only phone calls the
// IPv4-only sipp UAS through Kamailio, media through our relay.
func TestRunSIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := RunSIP(ctx, Options{Binary: isthmusBinary(t), Packets: 100, WorkDir: t.TempDir(), Progress: testWriter{t}})
	if errors.Is(r.Err, ErrSkipped) {
		t.Skip(r.Err)
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, l := range r.Phone {
		t.Logf("phone: %s", l)
	}
	for _, c := range r.Checks {
		if c.OK {
			t.Logf("ok   %s: %s", c.Name, c.Detail)
		} else {
			t.Errorf("FAIL %s: %s", c.Name, c.Detail)
		}
	}
	if !r.Passed() {
		t.Error("SIP demo did not pass")
	}
}
