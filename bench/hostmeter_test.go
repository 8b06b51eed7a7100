package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMeasureHost(t *testing.T) {
	stop := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(stop) })
	hs, err := MeasureHost(0, stop)
	if err != nil {
		t.Fatal(err)
	}
	// 100 ms of 1 ms sleeps: tens of samples even on a loaded machine.
	if hs.Samples < 10 || hs.CPU != 0 {
		t.Fatalf("got %+v, want >= 10 samples on cpu 0", hs)
	}
	if hs.P50 < 0 || hs.P99 < hs.P50 || hs.Max < hs.P99 || hs.StalledPct < 0 || hs.StalledPct > 100 {
		t.Errorf("quantiles out of order or stalled share out of range: %+v", hs)
	}
	if os.Geteuid() == 0 && !hs.RealTime {
		t.Errorf("as root the meter should run as SCHED_FIFO: %+v", hs)
	}
}

func TestMeasureHostBadCPU(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	if _, err := MeasureHost(4095, stop); err == nil || !strings.Contains(err.Error(), "cpu 4095") {
		t.Fatalf("error %v, want one naming cpu 4095", err)
	}
}

// The meter's process protocol: measure until stdin closes, then one JSON
// object on stdout.
func TestServeHostMeter(t *testing.T) {
	r, w := io.Pipe()
	time.AfterFunc(50*time.Millisecond, func() { _ = w.Close() })
	var out bytes.Buffer
	if err := ServeHostMeter(0, r, &out); err != nil {
		t.Fatal(err)
	}
	var hs HostStalls
	if err := json.Unmarshal(out.Bytes(), &hs); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if hs.Samples == 0 || hs.Error != "" {
		t.Errorf("got %+v", hs)
	}
}

// A meter command that cannot run loses nothing: the run gets an entry with
// the error for that CPU, and no figure from it.
func TestHostMeterCommandMissing(t *testing.T) {
	m := startHostMeter(t.Context(), []string{"/nonexistent/isthmus", "bench", "host-meter"}, []int{1, 0})
	got := m.stop()
	if len(got) != 2 || got[0].CPU != 1 || got[1].CPU != 0 {
		t.Fatalf("got %+v, want one entry per CPU in order", got)
	}
	for _, hs := range got {
		if hs.Error == "" || hs.Samples != 0 {
			t.Errorf("cpu %d: %+v, want an error and no samples", hs.CPU, hs)
		}
	}
	r := StepResult{Calls: 1, Host: got}
	if f := r.figures(); f.HostLateP99Ms != 0 || f.HostStalledPct != 0 {
		t.Errorf("figures from failed meters: %+v", f)
	}
}

func TestHostFiguresTakeWorstCPU(t *testing.T) {
	r := StepResult{Calls: 1, Host: []HostStalls{
		{CPU: 1, Samples: 10, P99: 3 * time.Millisecond, StalledPct: 0.5},
		{CPU: 0, Samples: 10, P99: 1 * time.Millisecond, StalledPct: 2},
		{CPU: 2, Error: "broken", P99: time.Hour},
	}}
	f := r.figures()
	if f.HostLateP99Ms != 3 || f.HostStalledPct != 2 {
		t.Errorf("host figures %v ms, %v %%; want 3 ms and 2 %% (worst CPU each, errors ignored)", f.HostLateP99Ms, f.HostStalledPct)
	}
}

func TestBoundNote(t *testing.T) {
	for _, tc := range []struct {
		st   StepSummary
		want string
	}{
		{StepSummary{Calls: 800}, ""},
		{StepSummary{Calls: 800, GeneratorBound: true}, " or more: at 800 calls the generator was saturated"},
		{StepSummary{Calls: 800, HostBound: true}, " or more: at 800 calls the host stalled its CPUs (see the host columns)"},
		// Loss is never blamed on host stalls.
		{StepSummary{Calls: 800, HostBound: true, Median: Figures{LossPct: 0.5}}, ""},
		{StepSummary{Calls: 800, HostBound: true, GeneratorBound: true}, " or more: at 800 calls the generator was saturated, and the host stalled its CPUs (see the host columns)"},
	} {
		if got := boundNote(tc.st); got != tc.want {
			t.Errorf("boundNote(%+v) = %q, want %q", tc.st, got, tc.want)
		}
		s := tc.st
		if v := verdict(&s); strings.Contains(v, "(host)") != tc.st.HostBound {
			t.Errorf("verdict %q for HostBound=%v", v, tc.st.HostBound)
		}
	}
}

func TestHostBound(t *testing.T) {
	l := Limits{MaxLossPct: 0.1, MaxP99: 5 * time.Millisecond}
	for _, tc := range []struct {
		m    Figures
		want bool
	}{
		{Figures{}, false},
		{Figures{HostStalledPct: 0.5, HostLateP99Ms: 1}, false},
		{Figures{HostStalledPct: 1.0}, true},
		{Figures{HostLateP99Ms: 2.6}, true},
	} {
		if got := hostBound(tc.m, l); got != tc.want {
			t.Errorf("hostBound(stalled %v%%, late p99 %v ms) = %v, want %v", tc.m.HostStalledPct, tc.m.HostLateP99Ms, got, tc.want)
		}
	}
}

// A latency failure while the host stalled does not end the capacity search;
// a loss failure, or a plain latency failure, does.
func TestCapacitySeries(t *testing.T) {
	l := Limits{MaxLossPct: 0.1, MaxP99: 5 * time.Millisecond}
	pass := func(c int) StepSummary { return StepSummary{Calls: c, Pass: true} }
	hostLate := func(c int) StepSummary {
		return StepSummary{Calls: c, HostBound: true, Median: Figures{P99Ms: 20}}
	}
	for _, tc := range []struct {
		name   string
		steps  []StepSummary
		cap    int
		note   string
		failed bool
	}{
		{"all pass", []StepSummary{pass(200), pass(400)}, 400, " or more: it passed every step run", false},
		{"host-bound step skipped", []StepSummary{pass(200), hostLate(400), pass(600), {Calls: 800, Median: Figures{P99Ms: 9}}}, 600, "", true},
		{"ends host-bound", []StepSummary{pass(200), hostLate(400)}, 200, " or more: at 400 calls the host stalled its CPUs (see the host columns)", false},
		{"loss while host-bound ends it", []StepSummary{pass(200), {Calls: 400, HostBound: true, Median: Figures{LossPct: 2}}, pass(600)}, 200, "", true},
		{"plain failure ends it", []StepSummary{pass(200), {Calls: 400}, pass(600)}, 200, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rr RelayReport
			var failed bool
			var last StepSummary
			for _, st := range tc.steps {
				rr.addStep(st, l, &failed, &last)
			}
			rr.endSeries(failed, last)
			if rr.Capacity != tc.cap || rr.CapacityNote != tc.note || failed != tc.failed {
				t.Errorf("capacity %d %q failed %v, want %d %q %v", rr.Capacity, rr.CapacityNote, failed, tc.cap, tc.note, tc.failed)
			}
		})
	}
}
