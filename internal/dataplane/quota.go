package dataplane

import "sync/atomic"

// bucket is a token bucket for one direction of one allocation, in bytes.
// Each direction of an allocation is served by one worker at a time (the
// worker reading the client's listener socket, or the worker owning the relay
// socket), so plain atomic loads and stores are enough: a rare concurrent
// update can only misplace a few tokens, never corrupt the bucket.
type bucket struct {
	tokens atomic.Int64
	last   atomic.Int64 // monotonic nanoseconds of the last refill
}

// allow takes n bytes from the bucket refilled at rate bytes per second (one
// second of burst) and reports whether the packet may pass. rate <= 0 means
// unlimited.
func (b *bucket) allow(now int64, n int, rate int64) bool {
	if rate <= 0 {
		return true
	}
	tokens := b.tokens.Load()
	if elapsed := now - b.last.Load(); elapsed > 0 {
		// Cap the elapsed time at one second before multiplying, so an idle
		// allocation cannot overflow the product.
		if elapsed > 1e9 {
			elapsed = 1e9
		}
		tokens += elapsed * rate / 1e9
		if tokens > rate {
			tokens = rate
		}
		b.last.Store(now)
	}
	if tokens < int64(n) {
		b.tokens.Store(tokens)
		return false
	}
	b.tokens.Store(tokens - int64(n))
	return true
}
