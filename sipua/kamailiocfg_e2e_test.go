//go:build e2e

package sipua

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKamailioConfigParses runs Kamailio's own checker (kamailio -c) on
// the shipped configuration, with its default addresses and with the
// ones a deployment passes by -A. It needs no root or namespace.
func TestKamailioConfigParses(t *testing.T) {
	if _, err := exec.LookPath("kamailio"); err != nil {
		t.Skipf("kamailio not installed: %v", err)
	}
	for _, args := range [][]string{
		nil,
		{"-A", `PROXY4="127.0.0.1"`, "-A", `PROXY6="[::1]"`, "-A", `DEMO_PASS="x"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "kamailio", append([]string{"-c", "-f", "../deploy/kamailio/kamailio.cfg"}, args...)...).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "config file ok") {
			t.Errorf("kamailio -c %v: %v\n%s", args, err, out)
		}
	}
}
