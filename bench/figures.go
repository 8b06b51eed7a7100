package bench

import (
	"math"
	"sort"
	"time"
)

// Figures are the per-step numbers a report shows, all as float64 so
// medians and ratios apply uniformly. Latencies are in milliseconds.
type Figures struct {
	Calls        float64 `json:"calls"`
	SentUp       float64 `json:"sent_up"`
	RecvUp       float64 `json:"recv_up"`
	SentDown     float64 `json:"sent_down"`
	RecvDown     float64 `json:"recv_down"`
	LossPct      float64 `json:"loss_pct"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	JitterMs     float64 `json:"jitter_ms"`
	CPUUsPkt     float64 `json:"cpu_us_per_pkt"`
	CPUSoftUsPkt float64 `json:"cpu_softirq_us_per_pkt"`
	RelayCPUPct  float64 `json:"relay_cpu_pct"`
	RSSKBAlloc   float64 `json:"rss_kb_per_alloc"`
	SetupPerSec  float64 `json:"setup_per_s"`
	RcvbufErrs   float64 `json:"rcvbuf_errors"`
	RelayDrops   float64 `json:"relay_socket_drops"`
	GenDrops     float64 `json:"generator_socket_drops"`
	InErrs       float64 `json:"in_errors"`
	// GenCPUPct is how busy the generator was (Traffic.GeneratorBusy).
	GenCPUPct  float64 `json:"generator_cpu_pct"`
	SendLateMs float64 `json:"send_late_p99_ms"`
	SkippedPct float64 `json:"skipped_late_pct"`
	// HostLateP99Ms and HostStalledPct are the host meter's figures on the
	// worst of the CPUs it watched (0 without a meter).
	HostLateP99Ms  float64 `json:"host_late_p99_ms"`
	HostStalledPct float64 `json:"host_stalled_pct"`
}

// column names one figure for tables: its label, a printf format, and how to
// reach it.
type column struct {
	label  string
	format string
	get    func(*Figures) *float64
}

// columns lists every figure in table order.
var columns = []column{
	{"calls", "%.0f", func(f *Figures) *float64 { return &f.Calls }},
	{"packets sent client->peer", "%.0f", func(f *Figures) *float64 { return &f.SentUp }},
	{"packets recv client->peer", "%.0f", func(f *Figures) *float64 { return &f.RecvUp }},
	{"packets sent peer->client", "%.0f", func(f *Figures) *float64 { return &f.SentDown }},
	{"packets recv peer->client", "%.0f", func(f *Figures) *float64 { return &f.RecvDown }},
	{"loss %", "%.4f", func(f *Figures) *float64 { return &f.LossPct }},
	{"added latency p50 ms", "%.3f", func(f *Figures) *float64 { return &f.P50Ms }},
	{"added latency p99 ms", "%.3f", func(f *Figures) *float64 { return &f.P99Ms }},
	{"added latency p99.9 ms", "%.3f", func(f *Figures) *float64 { return &f.P999Ms }},
	{"jitter (RFC 3550, mean) ms", "%.4f", func(f *Figures) *float64 { return &f.JitterMs }},
	{"relay CPU us/pkt (process)", "%.2f", func(f *Figures) *float64 { return &f.CPUUsPkt }},
	{"relay CPU us/pkt (+softirq of its CPU)", "%.2f", func(f *Figures) *float64 { return &f.CPUSoftUsPkt }},
	{"relay CPU % of one core", "%.1f", func(f *Figures) *float64 { return &f.RelayCPUPct }},
	{"relay RSS KiB per allocation", "%.1f", func(f *Figures) *float64 { return &f.RSSKBAlloc }},
	{"call setups/s (alloc+perm+chan)", "%.0f", func(f *Figures) *float64 { return &f.SetupPerSec }},
	{"UDP RcvbufErrors (v4+v6)", "%.0f", func(f *Figures) *float64 { return &f.RcvbufErrs }},
	{"UDP InErrors (v4+v6)", "%.0f", func(f *Figures) *float64 { return &f.InErrs }},
	{"drops at relay sockets", "%.0f", func(f *Figures) *float64 { return &f.RelayDrops }},
	{"drops at generator sockets", "%.0f", func(f *Figures) *float64 { return &f.GenDrops }},
	{"generator busy % of one core", "%.1f", func(f *Figures) *float64 { return &f.GenCPUPct }},
	{"generator send lateness p99 ms", "%.3f", func(f *Figures) *float64 { return &f.SendLateMs }},
	{"generator skipped (> 20 ms late) %", "%.3f", func(f *Figures) *float64 { return &f.SkippedPct }},
	{"host: CPU wake-up late p99 ms (worst CPU)", "%.3f", func(f *Figures) *float64 { return &f.HostLateP99Ms }},
	{"host: CPU stalled % (worst CPU)", "%.3f", func(f *Figures) *float64 { return &f.HostStalledPct }},
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// figures derives the report figures from one run's measurements.
func (r *StepResult) figures() Figures {
	t := &r.Traffic
	f := Figures{
		Calls:       float64(r.Calls),
		SentUp:      float64(t.Up.Sent),
		RecvUp:      float64(t.Up.Received),
		SentDown:    float64(t.Down.Sent),
		RecvDown:    float64(t.Down.Received),
		LossPct:     t.All.LossPct,
		P50Ms:       ms(t.All.P50),
		P99Ms:       ms(t.All.P99),
		P999Ms:      ms(t.All.P999),
		JitterMs:    ms(t.All.JitterMean),
		RcvbufErrs:  float64(r.UDP.RcvbufErrors + r.UDP.RcvbufErrors6),
		InErrs:      float64(r.UDP.InErrors + r.UDP.InErrors6),
		GenCPUPct:   100 * t.GeneratorBusy,
		SendLateMs:  ms(t.SendLateP99),
		SetupPerSec: r.Setup.RatePerSec,
		RelayDrops:  float64(r.RelayDrops),
		GenDrops:    float64(r.GeneratorDrops),
	}
	for _, h := range r.Host {
		if h.Error == "" {
			f.HostLateP99Ms = max(f.HostLateP99Ms, ms(h.P99))
			f.HostStalledPct = max(f.HostStalledPct, h.StalledPct)
		}
	}
	if sched := t.All.Sent + t.All.SendErrors + t.All.Skipped; sched > 0 {
		f.SkippedPct = 100 * float64(t.All.Skipped) / float64(sched)
	}
	if r.Error != "" && t.All.Sent == 0 {
		// The step never ran: count it as total loss so it fails.
		f.LossPct = 100
	}
	// Every received packet was relayed exactly once.
	if relayed := float64(t.All.Received); relayed > 0 {
		f.CPUUsPkt = float64(r.RelayCPU) / float64(time.Microsecond) / relayed
		f.CPUSoftUsPkt = float64(r.RelayCPU+r.Softirq) / float64(time.Microsecond) / relayed
	}
	if t.Duration > 0 {
		f.RelayCPUPct = 100 * float64(r.RelayCPU) / float64(t.Duration)
	}
	if r.Calls > 0 && r.RSSLoaded > 0 {
		f.RSSKBAlloc = float64(r.RSSLoaded-r.RSSIdle) / 1024 / float64(r.Calls)
	}
	return f
}

// median returns the fieldwise median of fs.
func median(fs []Figures) Figures {
	var out Figures
	if len(fs) == 0 {
		return out
	}
	vals := make([]float64, len(fs))
	for _, c := range columns {
		for i := range fs {
			vals[i] = *c.get(&fs[i])
		}
		sort.Float64s(vals)
		m := vals[len(vals)/2]
		if len(vals)%2 == 0 {
			m = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
		}
		*c.get(&out) = m
	}
	return out
}

// ratio returns a/b fieldwise; a field is NaN where b is 0 (and a is not).
func ratio(a, b Figures) Figures {
	var out Figures
	for _, c := range columns {
		x, y := *c.get(&a), *c.get(&b)
		switch {
		case y != 0:
			*c.get(&out) = x / y
		case x == 0:
			*c.get(&out) = 1
		default:
			*c.get(&out) = math.Inf(1)
		}
	}
	return out
}
