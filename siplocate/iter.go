package siplocate

import (
	"context"
	"sync"
)

// Iterator walks a target list one transaction at a time, the RFC 3263
// §4.3 failover for transports without connections (UDP): send to
// Current; when the transaction times out, the transport reports an error
// or the server answers 503 (RFC 3261 §21.5.4), call Next and send the
// request again, as a new transaction, to the next target. An Iterator is
// safe for concurrent use.
type Iterator struct {
	mu      sync.Mutex
	targets []Target
	pos     int
}

// Iterate locates uri and returns an Iterator over its targets.
func (r *Resolver) Iterate(ctx context.Context, uri string) (*Iterator, error) {
	ts, err := r.Locate(ctx, uri)
	if err != nil {
		return nil, err
	}
	return NewIterator(ts), nil
}

// NewIterator returns an Iterator over targets, positioned at the first.
func NewIterator(targets []Target) *Iterator {
	return &Iterator{targets: append([]Target(nil), targets...)}
}

// Current returns the target to use now; false when every target failed.
// After a success keep calling Current: later transactions go to the same
// server until it fails.
func (it *Iterator) Current() (Target, bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.pos >= len(it.targets) {
		return Target{}, false
	}
	return it.targets[it.pos], true
}

// Next records that the current target failed and returns the next one;
// false when there is none left (the request fails, RFC 3263 §4.3).
func (it *Iterator) Next() (Target, bool) {
	it.mu.Lock()
	if it.pos < len(it.targets) {
		it.pos++
	}
	it.mu.Unlock()
	return it.Current()
}

// Remaining counts the targets not yet failed, the current one included.
func (it *Iterator) Remaining() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	return len(it.targets) - it.pos
}
