package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of [Run] or [Compare].
type Report struct {
	Started          time.Time     `json:"started"`
	Finished         time.Time     `json:"finished"`
	Duration         time.Duration `json:"run_duration_ns"`
	Repeats          int           `json:"repeats"`
	Limits           Limits        `json:"limits"`
	Paths            []string      `json:"paths"`
	GeneratorPinning string        `json:"generator_pinning"`
	// IRQTimeAccounting is the kernel's CONFIG_IRQ_TIME_ACCOUNTING ("on",
	// "off", "unknown"); see the CPU figures in docs/bench.md.
	IRQTimeAccounting string        `json:"irq_time_accounting"`
	Relays            []RelayReport `json:"relays"`
	// Ratios are first relay / second relay, per step both ran.
	Ratios []StepRatio `json:"-"`
	// CapacityRatio is first / second relay capacity (0 if either is 0).
	CapacityRatio float64 `json:"capacity_ratio"`
	// Partial is set when the overall timeout cut the run short.
	Partial bool `json:"partial"`
}

// RelayReport is one relay's step series.
type RelayReport struct {
	Spec  RelaySpec     `json:"spec"`
	Steps []StepSummary `json:"steps"`
	// Capacity is the last passing step before the first failing one (0
	// when the first step failed).
	Capacity int `json:"capacity_calls"`
	// CapacityNote says when the step that ended the series had a saturated
	// generator, so the relay's true capacity may be higher.
	CapacityNote string `json:"capacity_note,omitempty"`
}

// StepSummary is one relay at one step: its runs and their medians.
type StepSummary struct {
	Calls  int          `json:"calls"`
	Runs   []StepResult `json:"runs"`
	Median Figures      `json:"median"`
	Errors int          `json:"errors"`
	Pass   bool         `json:"pass"`
	Reason string       `json:"reason,omitempty"`
	// GeneratorBound is set when the generator used at least
	// GeneratorSaturatedPct of its CPU, skipped more than
	// GeneratorSkippedPct of its packets, or sent later than the p99 limit
	// at p99 (medians): the load, not only the relay, was at its limit.
	GeneratorBound bool `json:"generator_bound"`
	// HostBound is set when the host meter's medians say the relay's or
	// the generator's CPU was stalled by the machine itself enough to decide
	// the p99 (see HostStalledPct), whichever relay ran.
	HostBound bool `json:"host_bound"`
}

// A step is host-bound when the host meter's median shows the CPUs stalled
// at least HostStalledPct of the time, or its p99 wake-up lateness above
// HostBoundShare of the p99 latency limit.
const (
	HostStalledPct = 1.0
	HostBoundShare = 0.5
)

// GeneratorSaturatedPct is the generator CPU use (percent of one core) from
// which a step counts as generator-bound; so does a step where the generator
// skipped more than GeneratorSkippedPct of its packets for being late.
const (
	GeneratorSaturatedPct = 90
	GeneratorSkippedPct   = 1
)

// RelaySaturatedPct is the relay CPU use, softirq included (percent of one
// core), from which a relay counts as saturated at a step: its CPU per
// packet there is one core divided by the packets it managed, a rate and no
// longer a cost, so the CPU comparison skips such steps.
const RelaySaturatedPct = 90

// relaySaturated reports whether f's relay used RelaySaturatedPct of its
// core, softirq included.
func relaySaturated(f Figures) bool {
	soft := 1.0
	if f.CPUUsPkt > 0 && f.CPUSoftUsPkt > f.CPUUsPkt {
		soft = f.CPUSoftUsPkt / f.CPUUsPkt
	}
	return f.RelayCPUPct*soft >= RelaySaturatedPct
}

// StepRatio is first/second relay for every figure at one step.
type StepRatio struct {
	Calls int
	Ratio Figures
}

// MarshalJSON adds the ratios keyed by figure label (null where undefined).
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	type jsonRatio struct {
		Calls int                 `json:"calls"`
		Ratio map[string]*float64 `json:"ratio"`
	}
	out := struct {
		*plain
		Ratios []jsonRatio `json:"ratios"`
	}{plain: (*plain)(r)}
	for _, sr := range r.Ratios {
		m := map[string]*float64{}
		for _, c := range columns {
			m[c.label] = finite(*c.get(&sr.Ratio))
		}
		out.Ratios = append(out.Ratios, jsonRatio{Calls: sr.Calls, Ratio: m})
	}
	return json.Marshal(out)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func fmtRatio(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return "n/a"
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteTable prints the report for people: per step, every figure's median
// for each relay (and the ratio when there are two), then a summary.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	names := make([]string, len(r.Relays))
	for i, rr := range r.Relays {
		names[i] = rr.Spec.Name
	}
	fmt.Fprintf(&b, "isthmus bench: %s, %v traffic per run, %d run(s) per relay per step (medians shown), paths %s\n",
		strings.Join(names, " vs "), r.Duration, r.Repeats, strings.Join(r.Paths, ","))
	fmt.Fprintf(&b, "pass limits: loss <= %.4g%%, p99 added latency <= %v; 50 pps each way per call, %d-byte RTP\n",
		r.Limits.MaxLossPct, r.Limits.MaxP99, PacketSize)
	fmt.Fprintf(&b, "generator: %s", r.GeneratorPinning)
	for _, rr := range r.Relays {
		pin := "?"
		if len(rr.Steps) > 0 && len(rr.Steps[0].Runs) > 0 {
			pin = rr.Steps[0].Runs[0].Pinning
		}
		fmt.Fprintf(&b, "; %s: %s", rr.Spec.Name, pin)
	}
	b.WriteString("\n")
	switch r.IRQTimeAccounting {
	case "off":
		b.WriteString("CPU: kernel without IRQ time accounting: the process figure already holds the softirq work done in the relay's context; +softirq is an upper bound\n")
	case "on":
		b.WriteString("CPU: kernel with IRQ time accounting: softirq time is not in the process figure; +softirq adds the pinned CPU's softirq time\n")
	}
	if r.Partial {
		b.WriteString("NOTE: the overall timeout ended the run early; later steps are missing\n")
	}
	steps := r.stepCalls()
	for _, calls := range steps {
		fmt.Fprintf(&b, "\n== %d calls ==\n", calls)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		// Pad labels so they read left-aligned in a right-aligned table.
		lw := 0
		for _, c := range columns[1:] {
			lw = max(lw, len(c.label))
		}
		pad := func(s string) string { return fmt.Sprintf("%-*s", lw, s) }
		head := pad("figure") + "\t"
		for _, n := range names {
			head += n + "\t"
		}
		if len(r.Relays) == 2 {
			head += "ratio " + names[0] + "/" + names[1] + "\t"
		}
		fmt.Fprintln(tw, head)
		sums := make([]*StepSummary, len(r.Relays))
		for i := range r.Relays {
			sums[i] = r.Relays[i].step(calls)
		}
		var rat *Figures
		for i := range r.Ratios {
			if r.Ratios[i].Calls == calls {
				rat = &r.Ratios[i].Ratio
			}
		}
		for _, c := range columns[1:] {
			line := pad(c.label) + "\t"
			for _, s := range sums {
				if s == nil {
					line += "-\t"
					continue
				}
				line += fmt.Sprintf(c.format, *c.get(&s.Median)) + "\t"
			}
			if len(r.Relays) == 2 {
				if rat != nil {
					line += fmtRatio(*c.get(rat)) + "\t"
				} else {
					line += "-\t"
				}
			}
			fmt.Fprintln(tw, line)
		}
		line := pad("verdict") + "\t"
		for _, s := range sums {
			line += verdict(s) + "\t"
		}
		fmt.Fprintln(tw, line)
		_ = tw.Flush()
		for i, s := range sums {
			if s != nil && !s.Pass {
				fmt.Fprintf(&b, "  %s fails: %s\n", names[i], s.Reason)
			}
			if s != nil {
				for _, run := range s.Runs {
					if run.Error != "" {
						fmt.Fprintf(&b, "  %s run error: %s\n", names[i], firstLine(run.Error))
					}
				}
			}
		}
	}
	b.WriteString("\n== summary (medians) ==\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "calls\trelay\tloss %\tp99 ms\tp99.9 ms\tus/pkt\tus/pkt+softirq\tKiB/alloc\tsetups/s\tgen %\thost stall %\tverdict\t")
	for _, calls := range steps {
		for _, rr := range r.Relays {
			s := rr.step(calls)
			if s == nil {
				continue
			}
			m := s.Median
			v := verdict(s)
			fmt.Fprintf(tw, "%d\t%s\t%.4f\t%.3f\t%.3f\t%.2f\t%.2f\t%.1f\t%.0f\t%.0f\t%.3f\t%s\t\n",
				calls, rr.Spec.Name, m.LossPct, m.P99Ms, m.P999Ms, m.CPUUsPkt, m.CPUSoftUsPkt, m.RSSKBAlloc, m.SetupPerSec, m.GenCPUPct, m.HostStalledPct, v)
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "(gen) = generator >= %d%% busy, > %d%% of its packets skipped for being > 20 ms late, or its sends late by more than the p99 limit at p99: the load generator, not only the relay, was at its limit\n", GeneratorSaturatedPct, GeneratorSkippedPct)
	if r.hostMetered() {
		fmt.Fprintf(&b, "(host) = a real-time thread pinned to the relay's or the generator's CPU found it stalled >= %.0f%% of the time, or woke > %.0f%% of the p99 limit late at p99: the machine itself stalled its CPUs; a latency failure there does not end the capacity search\n", HostStalledPct, 100*HostBoundShare)
	}
	for _, rr := range r.Relays {
		fmt.Fprintf(&b, "capacity %s: %d calls%s\n", rr.Spec.Name, rr.Capacity, rr.CapacityNote)
	}
	if len(r.Relays) == 2 {
		if r.CapacityRatio > 0 {
			var bound string
			switch a, b := r.Relays[0].CapacityNote != "", r.Relays[1].CapacityNote != ""; {
			case a && b:
				bound = " (both capacities are lower bounds: the ratio bounds nothing)"
			case a:
				bound = fmt.Sprintf(" or more (%s's capacity is a lower bound)", names[0])
			case b:
				bound = fmt.Sprintf(" or less (%s's capacity is a lower bound)", names[1])
			}
			fmt.Fprintf(&b, "capacity ratio %s/%s: %.2f%s\n", names[0], names[1], r.CapacityRatio, bound)
		}
		if c := r.lastCommonPass(); c > 0 {
			a, bb := r.Relays[0].step(c), r.Relays[1].step(c)
			fmt.Fprintf(&b, "CPU per relayed packet at %d calls (largest step both pass): %s/%s = %.2f (process), %.2f (with softirq)\n",
				c, names[0], names[1], a.Median.CPUUsPkt/bb.Median.CPUUsPkt, a.Median.CPUSoftUsPkt/bb.Median.CPUSoftUsPkt)
		}
		if c := r.lastCommonLoaded(); c > 0 {
			a, bb := r.Relays[0].step(c), r.Relays[1].step(c)
			fmt.Fprintf(&b, "CPU per relayed packet at %d calls (largest step with loss within the limit for both, and neither relay nor the generator saturated): %s/%s = %.2f (process), %.2f (with softirq)\n",
				c, names[0], names[1], a.Median.CPUUsPkt/bb.Median.CPUUsPkt, a.Median.CPUSoftUsPkt/bb.Median.CPUSoftUsPkt)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// verdict is PASS, FAIL or "not run"; "(gen)" marks a generator-bound step.
func verdict(s *StepSummary) string {
	v := "PASS"
	switch {
	case s == nil:
		return "not run"
	case !s.Pass:
		v = "FAIL"
	}
	if s.GeneratorBound {
		v += " (gen)"
	}
	if s.HostBound {
		v += " (host)"
	}
	return v
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func (rr *RelayReport) step(calls int) *StepSummary {
	for i := range rr.Steps {
		if rr.Steps[i].Calls == calls {
			return &rr.Steps[i]
		}
	}
	return nil
}

// stepCalls lists every step any relay ran, ascending.
func (r *Report) stepCalls() []int {
	seen := map[int]bool{}
	var out []int
	for _, rr := range r.Relays {
		for _, s := range rr.Steps {
			if !seen[s.Calls] {
				seen[s.Calls] = true
				out = append(out, s.Calls)
			}
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// lastCommonPass is the largest step both relays passed.
func (r *Report) lastCommonPass() int {
	best := 0
	for _, c := range r.stepCalls() {
		a, b := r.Relays[0].step(c), r.Relays[1].step(c)
		if a != nil && b != nil && a.Pass && b.Pass && a.Median.CPUUsPkt > 0 && b.Median.CPUUsPkt > 0 {
			best = c
		}
	}
	return best
}

// lastCommonLoaded is the largest step where both relays kept loss within
// the limit and neither they nor the generator were saturated: per-packet
// CPU is most meaningful there, whatever the latency verdict.
func (r *Report) lastCommonLoaded() int {
	best := 0
	for _, c := range r.stepCalls() {
		a, b := r.Relays[0].step(c), r.Relays[1].step(c)
		if a == nil || b == nil || a.GeneratorBound || b.GeneratorBound || relaySaturated(a.Median) || relaySaturated(b.Median) {
			continue
		}
		if a.Median.LossPct <= r.Limits.MaxLossPct && b.Median.LossPct <= r.Limits.MaxLossPct && a.Median.CPUUsPkt > 0 && b.Median.CPUUsPkt > 0 {
			best = c
		}
	}
	return best
}

// hostMetered reports whether any run had the host meter.
func (r *Report) hostMetered() bool {
	for _, rr := range r.Relays {
		for _, st := range rr.Steps {
			for _, run := range st.Runs {
				if len(run.Host) > 0 {
					return true
				}
			}
		}
	}
	return false
}
