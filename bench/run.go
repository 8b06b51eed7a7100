package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Config drives [Run] (one relay) and [Compare] (two relays).
type Config struct {
	// Relays are the relays under test; Compare wants two (ours first).
	Relays []RelaySpec
	// Steps are the call counts to try, ascending. Empty means 50, 100,
	// 200, ... doubling up to MaxCalls.
	Steps []int
	// MaxCalls caps the step list (default 3200).
	MaxCalls int
	// Duration of traffic per run (default 5 s).
	Duration time.Duration
	// Repeats is how many runs per relay per step (default 1 for Run, 3
	// for Compare); relays alternate ABAB within a step.
	Repeats int
	// Limits decide pass or fail per step.
	Limits Limits
	// Paths, SetupConcurrency, Senders and Spin shape the load (see
	// LoadConfig).
	Paths            []Path
	SetupConcurrency int
	Senders          int
	Spin             bool
	// KeepGoing runs every step even after a relay failed one.
	KeepGoing bool
	// Progress receives one line per run; nil discards.
	Progress io.Writer
	// GeneratorPinning describes how the caller pinned the generator.
	GeneratorPinning string
	// HostMeter and HostCPUs run the host meter during every run (see
	// [StepConfig]); empty HostMeter runs none.
	HostMeter []string
	HostCPUs  []int
}

// ErrNoRelays reports a Config without relays.
var ErrNoRelays = errors.New("bench: no relay to test")

func (c *Config) setDefaults(repeats int) {
	if c.MaxCalls <= 0 {
		c.MaxCalls = 3200
	}
	if len(c.Steps) == 0 {
		for n := 50; n <= c.MaxCalls; n *= 2 {
			c.Steps = append(c.Steps, n)
		}
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Repeats <= 0 {
		c.Repeats = repeats
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	c.Limits.setDefaults()
}

// Run runs the step series against the first relay of cfg (and any
// others, without ratios). The context bounds the whole run: when it ends,
// the report holds the steps finished so far and Partial is set.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults(1)
	return run(ctx, cfg)
}

// Compare runs the step series against two relays, alternating them ABAB
// (Repeats times each, default 3) within every step, and reports medians and
// the ratio first/second for every figure.
func Compare(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Relays) != 2 {
		return nil, fmt.Errorf("bench: compare: relays: %d given, want 2", len(cfg.Relays))
	}
	cfg.setDefaults(3)
	if cfg.Repeats < 3 {
		cfg.Repeats = 3
	}
	return run(ctx, cfg)
}

func run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Relays) == 0 {
		return nil, ErrNoRelays
	}
	rep := &Report{
		Started:           time.Now().UTC(),
		Duration:          cfg.Duration,
		Repeats:           cfg.Repeats,
		Limits:            cfg.Limits,
		GeneratorPinning:  cfg.GeneratorPinning,
		IRQTimeAccounting: IRQTimeAccounting(),
	}
	if rep.GeneratorPinning == "" {
		rep.GeneratorPinning = "not pinned by the caller"
	}
	for _, p := range cfg.Paths {
		rep.Paths = append(rep.Paths, p.String())
	}
	if len(rep.Paths) == 0 {
		rep.Paths = []string{PathV6toV4.String(), PathV4toV6.String()}
	}
	for _, r := range cfg.Relays {
		rep.Relays = append(rep.Relays, RelayReport{Spec: r})
	}
	failed := make([]bool, len(cfg.Relays))
	// lastInconclusive is each relay's largest host-bound step that failed
	// on latency alone.
	lastInconclusive := make([]StepSummary, len(cfg.Relays))
	for _, calls := range cfg.Steps {
		if calls > cfg.MaxCalls {
			break
		}
		active := 0
		for i := range failed {
			if !failed[i] || cfg.KeepGoing {
				active++
			}
		}
		if active == 0 {
			break
		}
		runs := make([][]StepResult, len(cfg.Relays))
		for rpt := 0; rpt < cfg.Repeats; rpt++ {
			for i, spec := range cfg.Relays {
				if failed[i] && !cfg.KeepGoing {
					continue
				}
				res, err := RunStep(ctx, spec, StepConfig{
					Calls: calls, Duration: cfg.Duration, Paths: cfg.Paths,
					SetupConcurrency: cfg.SetupConcurrency, Senders: cfg.Senders, Spin: cfg.Spin,
					HostMeter: cfg.HostMeter, HostCPUs: cfg.HostCPUs,
				})
				if err != nil {
					if ctx.Err() != nil {
						rep.Partial = true
						rep.finish()
						return rep, nil
					}
					return rep, fmt.Errorf("bench: %s at %d calls: %w", spec.Name, calls, err)
				}
				fmt.Fprintf(cfg.Progress, "%s %4d calls run %d/%d: loss %.4f%% p99 %.3f ms cpu %.2f us/pkt (%.2f with softirq) gen cpu %.0f%%%s\n",
					spec.Name, calls, rpt+1, cfg.Repeats, res.Figures.LossPct, res.Figures.P99Ms,
					res.Figures.CPUUsPkt, res.Figures.CPUSoftUsPkt, res.Figures.GenCPUPct, errSuffix(res.Error))
				runs[i] = append(runs[i], res)
			}
		}
		for i := range cfg.Relays {
			if len(runs[i]) == 0 {
				continue
			}
			st := StepSummary{Calls: calls, Runs: runs[i]}
			figs := make([]Figures, len(runs[i]))
			for k := range runs[i] {
				figs[k] = runs[i][k].Figures
				if runs[i][k].Error != "" {
					st.Errors++
				}
			}
			st.Median = median(figs)
			st.Pass, st.Reason = cfg.Limits.judge(st)
			st.GeneratorBound = generatorBound(st.Median, cfg.Limits)
			st.HostBound = hostBound(st.Median, cfg.Limits)
			rep.Relays[i].addStep(st, cfg.Limits, &failed[i], &lastInconclusive[i])
		}
	}
	for i := range rep.Relays {
		rep.Relays[i].endSeries(failed[i], lastInconclusive[i])
	}
	rep.finish()
	return rep, nil
}

// addStep appends a judged step to the relay's series and moves its
// capacity: a passing step before any conclusive failure raises it.
func (rr *RelayReport) addStep(st StepSummary, l Limits, failed *bool, lastInconclusive *StepSummary) {
	rr.Steps = append(rr.Steps, st)
	switch {
	case *failed:
	case st.Pass:
		rr.Capacity = st.Calls
	case st.HostBound && st.Median.LossPct <= l.MaxLossPct:
		// Too late only while the machine stalled its CPUs: the step says
		// nothing about this relay, so the series goes on (host stalls
		// come and go; generator saturation does not, so that still ends
		// it).
		*lastInconclusive = st
	default:
		rr.CapacityNote = boundNote(st)
		*failed = true
	}
}

// endSeries notes when the capacity is only a lower bound because the series
// ended without a conclusive failure.
func (rr *RelayReport) endSeries(failed bool, lastInconclusive StepSummary) {
	switch {
	case failed:
	case lastInconclusive.Calls > rr.Capacity:
		rr.CapacityNote = boundNote(lastInconclusive)
	case rr.Capacity > 0:
		rr.CapacityNote = " or more: it passed every step run"
	}
}

// hostBound reports whether the host meter says the machine, not the relay,
// decided a step's p99: its CPUs were stalled for at least HostStalledPct of
// the time (the p99 is the worst 1 % of packets: those that met a stall), or
// its p99 wake-up lateness exceeded HostBoundShare of the latency limit.
func hostBound(m Figures, l Limits) bool {
	return m.HostStalledPct >= HostStalledPct ||
		(l.MaxP99 > 0 && m.HostLateP99Ms > HostBoundShare*ms(l.MaxP99))
}

// generatorBound reports whether the generator was at its limit at a step
// (medians): busy for GeneratorSaturatedPct of its core, skipping more than
// GeneratorSkippedPct of its packets, or sending later than the p99 latency
// limit at p99. A generator that far behind catches up in bursts, and the
// relay's latency then measures the bursts.
func generatorBound(m Figures, l Limits) bool {
	return m.GenCPUPct >= GeneratorSaturatedPct || m.SkippedPct > GeneratorSkippedPct ||
		(l.MaxP99 > 0 && m.SendLateMs > ms(l.MaxP99))
}

// boundNote says why a failed step may not bound the relay's capacity.
func boundNote(st StepSummary) string {
	var why []string
	if st.GeneratorBound {
		why = append(why, "the generator was saturated")
	}
	if st.HostBound && st.Median.LossPct <= 0 {
		why = append(why, "the host stalled its CPUs (see the host columns)")
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf(" or more: at %d calls %s", st.Calls, strings.Join(why, ", and "))
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " ERROR " + e
}

// judge decides a step on its medians; a majority of failed runs fails it.
func (l Limits) judge(st StepSummary) (bool, string) {
	switch {
	case st.Errors*2 > len(st.Runs):
		return false, fmt.Sprintf("%d of %d runs failed", st.Errors, len(st.Runs))
	case st.Median.LossPct > l.MaxLossPct:
		return false, fmt.Sprintf("loss %.4f%% > %.4g%%", st.Median.LossPct, l.MaxLossPct)
	case st.Median.P99Ms > ms(l.MaxP99):
		return false, fmt.Sprintf("p99 %.3f ms > %.3g ms", st.Median.P99Ms, ms(l.MaxP99))
	}
	return true, ""
}

// finish computes the ratios of the first relay to the second.
func (r *Report) finish() {
	r.Finished = time.Now().UTC()
	if len(r.Relays) != 2 {
		return
	}
	a, b := r.Relays[0], r.Relays[1]
	r.Ratios = nil
	for _, sa := range a.Steps {
		for _, sb := range b.Steps {
			if sa.Calls == sb.Calls {
				r.Ratios = append(r.Ratios, StepRatio{Calls: sa.Calls, Ratio: ratio(sa.Median, sb.Median)})
			}
		}
	}
	if a.Capacity > 0 && b.Capacity > 0 {
		r.CapacityRatio = float64(a.Capacity) / float64(b.Capacity)
	}
}

// finite maps NaN and infinities to nil for JSON.
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
