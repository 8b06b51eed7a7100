package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedianAndRatio(t *testing.T) {
	runs := []Figures{{LossPct: 0.3, P99Ms: 2, CPUUsPkt: 10}, {LossPct: 0.1, P99Ms: 9, CPUUsPkt: 12}, {LossPct: 0.2, P99Ms: 1, CPUUsPkt: 11}}
	m := median(runs)
	if m.LossPct != 0.2 || m.P99Ms != 2 || m.CPUUsPkt != 11 {
		t.Errorf("median of three = %+v, want loss 0.2 p99 2 cpu 11 (fieldwise)", m)
	}
	if m := median(runs[:2]); m.P99Ms != 5.5 {
		t.Errorf("median of two p99 = %v, want the mean 5.5", m.P99Ms)
	}
	r := ratio(Figures{CPUUsPkt: 6, LossPct: 0, RcvbufErrs: 3}, Figures{CPUUsPkt: 12, LossPct: 0, RcvbufErrs: 0})
	if r.CPUUsPkt != 0.5 || r.LossPct != 1 || !math.IsInf(r.RcvbufErrs, 1) {
		t.Errorf("ratio = cpu %v loss %v drops %v, want 0.5, 1 (0/0), +Inf (3/0)", r.CPUUsPkt, r.LossPct, r.RcvbufErrs)
	}
}

func TestLimitsJudge(t *testing.T) {
	l := Limits{}
	l.setDefaults()
	ok := []StepResult{{}, {}, {}}
	for _, tc := range []struct {
		name string
		st   StepSummary
		pass bool
	}{
		{"within both limits passes", StepSummary{Runs: ok, Median: Figures{LossPct: 0.1, P99Ms: 5}}, true},
		{"loss above the 0.1% limit fails", StepSummary{Runs: ok, Median: Figures{LossPct: 0.11, P99Ms: 1}}, false},
		{"p99 above the 5 ms limit fails", StepSummary{Runs: ok, Median: Figures{P99Ms: 5.01}}, false},
		{"a majority of failed runs fails", StepSummary{Runs: ok, Errors: 2}, false},
		{"one failed run of three is outvoted", StepSummary{Runs: ok, Errors: 1}, true},
	} {
		if pass, reason := l.judge(tc.st); pass != tc.pass {
			t.Errorf("%s: pass %v (%s), want %v", tc.name, pass, reason, tc.pass)
		}
	}
}

func TestFiguresFromStep(t *testing.T) {
	r := StepResult{
		Calls: 10,
		Traffic: Traffic{
			Duration: 2 * time.Second,
			Up:       DirStats{Sent: 1000, Received: 1000},
			Down:     DirStats{Sent: 1000, Received: 998},
			All:      DirStats{Sent: 2000, Received: 1998, LossPct: 0.1, P99: 3 * time.Millisecond},
		},
		RelayCPU:  200 * time.Millisecond,
		Softirq:   100 * time.Millisecond,
		RSSIdle:   10 << 20,
		RSSLoaded: 10<<20 + 10*40<<10,
		UDP:       UDPCounters{RcvbufErrors: 1, RcvbufErrors6: 1},
	}
	f := r.figures()
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"CPU per relayed packet = relay CPU / packets received", f.CPUUsPkt, 200e3 / 1998},
		{"with softirq adds the pinned CPU's softirq", f.CPUSoftUsPkt, 300e3 / 1998},
		{"relay CPU percent of the run", f.RelayCPUPct, 10},
		{"RSS per allocation = RSS growth / calls", f.RSSKBAlloc, 40},
		{"drops sum both families", f.RcvbufErrs, 2},
		{"p99 in ms", f.P99Ms, 3},
	} {
		if math.Abs(tc.got-tc.want) > 1e-9 {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	failed := StepResult{Calls: 10, Error: "setup: boom"}
	if f := failed.figures(); f.LossPct != 100 {
		t.Errorf("a step that never ran has loss %v, want 100 so it fails", f.LossPct)
	}
}

// syntheticReport is a two-relay report as run() would build it.
func syntheticReport() *Report {
	mk := func(name string, cpu float64, lossAt400 float64) RelayReport {
		rr := RelayReport{Spec: RelaySpec{Name: name}}
		for _, calls := range []int{100, 200, 400} {
			m := Figures{Calls: float64(calls), CPUUsPkt: cpu, CPUSoftUsPkt: cpu + 1, P99Ms: 0.5}
			if calls == 400 {
				m.LossPct = lossAt400
			}
			st := StepSummary{Calls: calls, Median: m, Runs: []StepResult{{Relay: name, Calls: calls, Pinning: "taskset -c 1", Figures: m}}}
			st.Pass, st.Reason = Limits{MaxLossPct: 0.1, MaxP99: 5 * time.Millisecond}.judge(st)
			rr.Steps = append(rr.Steps, st)
			if st.Pass {
				rr.Capacity = calls
			}
		}
		return rr
	}
	r := &Report{Duration: time.Second, Repeats: 3, Limits: Limits{MaxLossPct: 0.1, MaxP99: 5 * time.Millisecond},
		Paths: []string{"ip6>ip4"}, GeneratorPinning: "cpu 0",
		Relays: []RelayReport{mk("isthmus", 5, 0), mk("coturn", 10, 2)}}
	r.finish()
	return r
}

func TestReportOutputs(t *testing.T) {
	r := syntheticReport()
	if r.Relays[0].Capacity != 400 || r.Relays[1].Capacity != 200 || r.CapacityRatio != 2 {
		t.Fatalf("capacities %d/%d ratio %v, want 400/200 ratio 2", r.Relays[0].Capacity, r.Relays[1].Capacity, r.CapacityRatio)
	}
	var tbl bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ratio isthmus/coturn", "== 400 calls ==", "relay CPU us/pkt (process)", "capacity isthmus: 400 calls", "capacity coturn: 200 calls", "capacity ratio isthmus/coturn: 2.00", "coturn fails: loss 2.0000% > 0.1%", "= 0.50 (process)"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Relays []struct {
			Capacity int `json:"capacity_calls"`
		} `json:"relays"`
		Ratios []struct {
			Calls int                 `json:"calls"`
			Ratio map[string]*float64 `json:"ratio"`
		} `json:"ratios"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not decode: %v", err)
	}
	if len(back.Relays) != 2 || len(back.Ratios) != 3 {
		t.Fatalf("JSON has %d relays, %d ratio steps; want 2, 3", len(back.Relays), len(back.Ratios))
	}
	if v := back.Ratios[0].Ratio["relay CPU us/pkt (process)"]; v == nil || *v != 0.5 {
		t.Errorf("JSON CPU ratio = %v, want 0.5", v)
	}
	var svg bytes.Buffer
	if err := r.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	polylines := 0
	dec := xml.NewDecoder(&svg)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 4 {
		t.Errorf("SVG has %d polylines, want 4 (2 relays x loss, latency)", polylines)
	}
}

// TestCPUComparisonSkipsSaturatedRelays: at a step where a relay used
// (nearly) all of its core, CPU per packet measures the rate it managed,
// not its cost, so the loaded-step comparison stops below it.
func TestCPUComparisonSkipsSaturatedRelays(t *testing.T) {
	r := syntheticReport()
	for i := range r.Relays {
		for j := range r.Relays[i].Steps {
			st := &r.Relays[i].Steps[j]
			st.Median.LossPct = 0
			st.Median.RelayCPUPct = 40
			if st.Calls == 400 && i == 1 {
				st.Median.RelayCPUPct = 85 // 85 x 11/10 with softirq: saturated
			}
		}
	}
	if c := r.lastCommonLoaded(); c != 200 {
		t.Fatalf("CPU compared at %d calls, want 200 (coturn saturated at 400)", c)
	}
	r.Relays[1].Steps[2].Median.RelayCPUPct = 80 // 88 with softirq
	if c := r.lastCommonLoaded(); c != 400 {
		t.Fatalf("CPU compared at %d calls, want 400", c)
	}
}

func TestGeneratorBound(t *testing.T) {
	l := Limits{MaxLossPct: 0.1, MaxP99: 5 * time.Millisecond}
	for _, tc := range []struct {
		m    Figures
		want bool
	}{
		{Figures{GenCPUPct: 80, SkippedPct: 0.5, SendLateMs: 4.9}, false},
		{Figures{GenCPUPct: 90}, true},
		{Figures{SkippedPct: 1.1}, true},
		{Figures{SendLateMs: 5.1}, true}, // pacing error beyond the latency limit
	} {
		if got := generatorBound(tc.m, l); got != tc.want {
			t.Errorf("generatorBound(busy %v%%, skipped %v%%, late p99 %v ms) = %v, want %v",
				tc.m.GenCPUPct, tc.m.SkippedPct, tc.m.SendLateMs, got, tc.want)
		}
	}
}
