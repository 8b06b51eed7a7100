package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/bench"
)

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"help exits 0", []string{"bench", "--help"}, 0, "isthmus bench compare [flags]"},
		{"compare help exits 0", []string{"bench", "compare", "--help"}, 0, "ratio isthmus/coturn"},
		{"bad steps", []string{"bench", "--steps", "10,x"}, 2, `--steps: "x"`},
		{"bad path", []string{"bench", "--paths", "ip6"}, 2, "--paths"},
		{"port range smaller than max calls", []string{"bench", "--min-port", "20000", "--max-port", "20099", "--max-calls", "500"}, 2, "fewer relay ports"},
		{"bad gen-wait", []string{"bench", "--gen-wait", "nap"}, 2, `--gen-wait "nap": want auto, spin or sleep`},
		{"unknown relay", []string{"bench", "--relay", "nginx"}, 2, `--relay "nginx"`},
		{"external needs a target", []string{"bench", "--relay", "external"}, 2, "need --target"},
		{"bad user", []string{"bench", "--user", "nopassword"}, 2, "NAME:PASSWORD"},
		{"host meter needs a CPU", []string{"bench", "host-meter"}, 2, "--cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := dispatch(tc.args, &out, &errb); code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
		})
	}
}

// The bench starts `isthmus bench host-meter --cpu N` and closes its stdin at
// the end of a run; it answers with one JSON object.
func TestHostMeterSubcommand(t *testing.T) {
	var out, errb bytes.Buffer
	r, w := io.Pipe()
	time.AfterFunc(50*time.Millisecond, func() { _ = w.Close() })
	if code := runHostMeter([]string{"--cpu", "0"}, r, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var hs bench.HostStalls
	if err := json.Unmarshal(out.Bytes(), &hs); err != nil || hs.Samples == 0 {
		t.Fatalf("output %q (%v), want a JSON result with samples", out.String(), err)
	}
}
