package bench

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lies inside its bucket, and buckets above the exact range
	// are at most 1/128 of their lower bound wide.
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 511, 512, 1000, 1 << 20, 123456789, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of [0,%d)", v, i, histBuckets)
		}
		lo, hi := histLow(i), histHigh(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d [%d,%d]", v, i, lo, hi)
		}
		if v >= histSub && float64(hi-lo+1) > float64(lo)/histSub {
			t.Errorf("bucket %d [%d,%d] wider than 1/%d of its low bound", i, lo, hi, histSub)
		}
		if i > 0 && histHigh(i-1)+1 != lo {
			t.Errorf("bucket %d starts at %d, previous ends at %d: gap or overlap", i, lo, histHigh(i-1))
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	type rec struct {
		v time.Duration
		n int
	}
	within := func(got, want time.Duration) bool {
		d := got - want
		if d < 0 {
			d = -d
		}
		return float64(d) <= float64(want)/histSub+1
	}
	for _, tc := range []struct {
		name                string
		recs                []rec
		p50, p99, p999, max time.Duration
	}{
		{"empty histogram gives zeros", nil, 0, 0, 0, 0},
		{"one value", []rec{{7 * time.Microsecond, 1}}, 7 * time.Microsecond, 7 * time.Microsecond, 7 * time.Microsecond, 7 * time.Microsecond},
		{"exact range 1..100 ns", func() []rec {
			var r []rec
			for v := 1; v <= 100; v++ {
				r = append(r, rec{time.Duration(v), 1})
			}
			return r
		}(), 50, 99, 100, 100},
		{"tail of 1% at 10 ms over 1 ms body", []rec{{time.Millisecond, 990}, {10 * time.Millisecond, 10}}, time.Millisecond, time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{"tail of 0.1% moves only p99.9", []rec{{200 * time.Microsecond, 999}, {50 * time.Millisecond, 1}}, 200 * time.Microsecond, 200 * time.Microsecond, 200 * time.Microsecond, 50 * time.Millisecond},
		{"negative durations count as zero", []rec{{-5, 3}}, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			var n uint64
			for _, r := range tc.recs {
				for range r.n {
					h.Record(r.v)
					n++
				}
			}
			if h.Count() != n {
				t.Errorf("Count = %d, want %d", h.Count(), n)
			}
			for _, q := range []struct {
				name      string
				got, want time.Duration
			}{{"p50", h.Quantile(0.5), tc.p50}, {"p99", h.Quantile(0.99), tc.p99}, {"p99.9", h.Quantile(0.999), tc.p999}, {"max", h.Max(), tc.max}} {
				if !within(q.got, q.want) {
					t.Errorf("%s = %v, want %v (within 1/%d)", q.name, q.got, q.want, histSub)
				}
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a.Count() != all.Count() || a.Max() != all.Max() {
		t.Fatalf("merged count %d max %v, want %d %v", a.Count(), a.Max(), all.Count(), all.Max())
	}
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99, 0.999} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%.3f: merged %v, direct %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
}

func TestJitterRFC3550(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		// transit times of consecutive packets, sent 20 ms apart
		transit []time.Duration
		want    time.Duration
	}{
		{"RFC 3550 6.4.1: constant transit gives zero jitter", []time.Duration{5 * ms, 5 * ms, 5 * ms, 5 * ms}, 0},
		{"first packet alone gives zero", []time.Duration{9 * ms}, 0},
		{"one step of D=16 ms gives J=D/16", []time.Duration{0, 16 * ms}, ms},
		{"step up then back: J=1, then 1+(16-1)/16", []time.Duration{0, 16 * ms, 0}, ms + 15*ms/16},
		// alternating 0,1 ms: J_n = 1ms * (1 - (15/16)^n), n = 2 differences
		{"alternating transit converges towards the swing", []time.Duration{0, ms, 0}, time.Duration(float64(ms) * (1 - 15.0/16*15.0/16))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var j Jitter
			for i, tr := range tc.transit {
				sent := time.Duration(i) * PacketInterval
				j.Add(sent, sent+tr)
			}
			if d := j.Value() - tc.want; d < -1 || d > 1 {
				t.Errorf("jitter = %v, want %v", j.Value(), tc.want)
			}
		})
	}
}
