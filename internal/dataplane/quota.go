package dataplane

import "sync/atomic"

const (
	// minQuotaBurst is the smallest burst a bucket allows, in bytes, at any
	// rate (the relay's own limiter uses the same floor): a client may send
	// this much at once after a quiet period.
	minQuotaBurst = 65536
	// maxQuotaRate bounds a configured rate (bytes per second) so that the
	// cost arithmetic never overflows.
	maxQuotaRate = 1 << 40
)

// bucket is one allocation's bandwidth limit, for both directions together
// (the relay's allocation_bandwidth semantics), as a GCRA token bucket: the
// whole state is the theoretical arrival time of the next byte, one int64
// updated by compare-and-swap. The two workers that may serve one
// allocation's two directions never lock, never lose an update, and no
// rounding accumulates between packets.
type bucket struct {
	tat atomic.Int64 // monotonic ns at which the bucket is empty again
}

// tolerance is how far ahead of now the bucket may run, in ns: one second
// of traffic, or minQuotaBurst bytes at low rates.
func tolerance(rate int64) int64 {
	if rate >= minQuotaBurst {
		return 1e9
	}
	return minQuotaBurst * 1e9 / rate
}

// reset fills the bucket at time now.
func (b *bucket) reset(now int64) { b.tat.Store(now) }

// allow charges n bytes at rate bytes per second and reports whether the
// datagram may pass. rate <= 0 means unlimited.
func (b *bucket) allow(now int64, n int, rate int64) bool {
	if rate <= 0 {
		return true
	}
	cost := int64(n) * 1e9 / rate
	tol := tolerance(rate)
	for {
		tat := b.tat.Load()
		next := max(tat, now) + cost
		if next-now > tol {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
