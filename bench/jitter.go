package bench

import "time"

// Jitter is the RFC 3550 section 6.4.1 interarrival jitter estimator of one
// stream: J += (|D| - J)/16, where D is the change in transit time (arrival
// minus send time) between consecutive packets. Send and arrival times are in
// nanoseconds on the same clock, so the result is in time units rather than
// RTP timestamp units. Not safe for concurrent use; the zero value is ready.
type Jitter struct {
	lastTransit time.Duration
	j           float64 // nanoseconds, kept fractional as RFC 3550 A.8 suggests
	started     bool
}

// Add updates the estimate with one packet's send and arrival times, in
// arrival order.
func (j *Jitter) Add(sent, arrived time.Duration) {
	transit := arrived - sent
	if !j.started {
		j.started = true
		j.lastTransit = transit
		return
	}
	d := transit - j.lastTransit
	j.lastTransit = transit
	if d < 0 {
		d = -d
	}
	j.j += (float64(d) - j.j) / 16
}

// Value returns the current jitter estimate.
func (j *Jitter) Value() time.Duration { return time.Duration(j.j) }
