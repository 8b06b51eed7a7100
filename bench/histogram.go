package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSubBits is the number of mantissa bits kept per power of two: 2^7 = 128
// sub-buckets bound the relative error of a recorded value to below 1/128
// (0.8%), the same idea as HdrHistogram with about two significant digits.
const histSubBits = 7

const (
	histSub     = 1 << histSubBits
	histBuckets = (64-histSubBits)*histSub + histSub
)

// Histogram is a log-linear histogram of non-negative durations with
// nanosecond input: values below 128 ns are exact, larger ones fall in one of
// 128 linear sub-buckets per power of two. Record is safe for concurrent use
// and allocation-free; the zero value is ready to use.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

// histIndex maps a value to its bucket.
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	l := bits.Len64(v) // > histSubBits
	shift := l - histSubBits - 1
	m := v >> uint(shift) // in [histSub, 2*histSub)
	return (shift+1)*histSub + int(m-histSub)
}

// histLow returns the smallest value that lands in bucket i.
func histLow(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return m << uint(shift)
}

// histHigh returns the largest value that lands in bucket i.
func histHigh(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	return histLow(i) + (uint64(1) << uint(shift)) - 1
}

// Record adds one duration; negative durations (a clock step) count as 0.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))].Add(1)
	h.total.Add(1)
	for {
		cur := h.max.Load()
		if int64(d) <= cur || h.max.CompareAndSwap(cur, int64(d)) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest recorded value (exact, not bucketed).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the value at quantile q (0 < q <= 1): the midpoint of the
// bucket holding the ceil(q*count)-th smallest value, capped at Max. It
// returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := histLow(i), histHigh(i)
			mid := lo + (hi-lo)/2
			if m := uint64(h.max.Load()); mid > m {
				mid = m
			}
			return time.Duration(mid)
		}
	}
	return h.Max()
}

// Merge adds every count of o into h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.total.Add(o.total.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}
