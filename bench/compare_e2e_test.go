//go:build e2e

package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const coturnBinary = "/usr/bin/turnserver"

// buildIsthmus builds cmd/isthmus into a temp dir and checks it has the
// relay subcommand; it returns "" (and why) when that is not possible.
func buildIsthmus(t *testing.T) (string, string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "go tool not found"
	}
	bin := filepath.Join(t.TempDir(), "isthmus")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/isthmusrelay/isthmus/cmd/isthmus").CombinedOutput()
	if err != nil {
		return "", "go build ./cmd/isthmus: " + err.Error() + ": " + string(out)
	}
	if out, err := exec.CommandContext(ctx, bin, "relay", "--help").CombinedOutput(); err != nil {
		return "", "isthmus relay --help: " + err.Error() + ": " + string(out)
	}
	return bin, ""
}

// TestCompareAgainstCoturn runs a real, tiny compare: our relay and coturn
// as separate processes, two steps, ABAB three times, and checks the report.
func TestCompareAgainstCoturn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relay processes; skipped in -short")
	}
	if _, err := os.Stat(coturnBinary); err != nil {
		t.Skipf("coturn not installed (%v): apt-get install coturn", err)
	}
	ours := RelaySpec{Name: "isthmus", Kind: KindIsthmus, CPU: -1,
		Realm: DefaultRealm, Username: DefaultUsername, Password: DefaultPassword, MinPort: 21000, MaxPort: 21999}
	bin, why := buildIsthmus(t)
	if bin == "" {
		// Keep testing the harness: coturn against itself.
		t.Logf("our relay is not available (%s); comparing coturn with coturn", why)
		ours.Name, ours.Kind, ours.Binary = "coturn-b", KindCoturn, coturnBinary
	} else {
		ours.Binary = bin
	}
	theirs := ours
	theirs.Name, theirs.Kind, theirs.Binary = "coturn", KindCoturn, coturnBinary
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	steps := []int{2, 4}
	rep, err := Compare(ctx, Config{
		Relays:    []RelaySpec{ours, theirs},
		Steps:     steps,
		Duration:  time.Second,
		KeepGoing: true, // a loaded CI machine may push p99 over 5 ms; run both steps anyway
		Progress:  &progress,
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("Compare: %v", err)
	}
	if rep.Partial {
		t.Fatalf("report is partial (timeout)")
	}
	if rep.Repeats != 3 || len(rep.Relays) != 2 || rep.Relays[0].Spec.Name != ours.Name || rep.Relays[1].Spec.Name != "coturn" {
		t.Fatalf("report: %d repeats, relays %+v", rep.Repeats, rep.Relays)
	}
	for _, rr := range rep.Relays {
		if len(rr.Steps) != len(steps) {
			t.Fatalf("%s ran %d steps, want %d", rr.Spec.Name, len(rr.Steps), len(steps))
		}
		for i, st := range rr.Steps {
			if st.Calls != steps[i] || len(st.Runs) != 3 {
				t.Fatalf("%s step %d: %d calls, %d runs; want %d calls, 3 runs", rr.Spec.Name, i, st.Calls, len(st.Runs), steps[i])
			}
			for _, run := range st.Runs {
				if run.Error != "" {
					t.Errorf("%s %d calls: run error %s", rr.Spec.Name, st.Calls, run.Error)
					continue
				}
				want := uint64(st.Calls) * uint64(time.Second/PacketInterval)
				tr := run.Traffic
				if tr.Up.Sent+tr.Up.Skipped != want || tr.Down.Sent+tr.Down.Skipped != want {
					t.Errorf("%s %d calls: sent+skipped %d/%d, want %d each way", rr.Spec.Name, st.Calls, tr.Up.Sent+tr.Up.Skipped, tr.Down.Sent+tr.Down.Skipped, want)
				}
				if tr.All.Received > tr.All.Sent || tr.All.LossPct > 1 {
					t.Errorf("%s %d calls: received %d of %d (%.3f%% loss): not sane at this load", rr.Spec.Name, st.Calls, tr.All.Received, tr.All.Sent, tr.All.LossPct)
				}
				if tr.All.P50 <= 0 || tr.All.P50 > tr.All.P99 {
					t.Errorf("%s %d calls: p50 %v p99 %v", rr.Spec.Name, st.Calls, tr.All.P50, tr.All.P99)
				}
				if run.RSSLoaded <= 0 || run.RelayCPU < 0 || run.Setup.RatePerSec <= 0 {
					t.Errorf("%s %d calls: rss %d cpu %v setup rate %v", rr.Spec.Name, st.Calls, run.RSSLoaded, run.RelayCPU, run.Setup.RatePerSec)
				}
			}
		}
	}
	if len(rep.Ratios) != len(steps) {
		t.Errorf("%d ratio steps, want %d", len(rep.Ratios), len(steps))
	}
	var tbl bytes.Buffer
	if err := rep.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tbl.String(), "ratio "+ours.Name+"/coturn") {
		t.Errorf("table lacks the ratio column:\n%s", tbl.String())
	}
	t.Logf("\n%s", tbl.String())
}
