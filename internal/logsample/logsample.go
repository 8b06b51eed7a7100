// Package logsample bounds how many records an slog.Handler passes per
// period, so a flood (bad requests from one host, pion's per-packet
// warnings) cannot flood the log. It is zerolog's BurstSampler with no
// next sampler, as an slog.Handler wrapper.
package logsample

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Burst passes the first n records of every period to the wrapped handler
// and drops the rest (level filtering happens first: a disabled record does
// not count). Handlers derived with WithAttrs and WithGroup share the budget.
type Burst struct {
	next   slog.Handler
	budget *budget
}

type budget struct {
	n       uint32
	period  int64 // ns
	resetAt atomic.Int64
	count   atomic.Uint32
}

// New wraps next with a budget of n records per period.
func New(next slog.Handler, n int, period time.Duration) *Burst {
	return &Burst{next: next, budget: &budget{n: uint32(n), period: int64(period)}}
}

func (b *budget) allow() bool {
	now := time.Now().UnixNano()
	resetAt := b.resetAt.Load()
	var c uint32
	if now >= resetAt {
		c = 1
		b.count.Store(c)
		b.resetAt.CompareAndSwap(resetAt, now+b.period)
	} else {
		c = b.count.Add(1)
	}
	return c <= b.n
}

// Enabled reports the wrapped handler's answer.
func (h *Burst) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on while the period's budget lasts.
func (h *Burst) Handle(ctx context.Context, r slog.Record) error {
	if !h.budget.allow() {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs wraps the wrapped handler's WithAttrs, sharing the budget.
func (h *Burst) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Burst{next: h.next.WithAttrs(attrs), budget: h.budget}
}

// WithGroup wraps the wrapped handler's WithGroup, sharing the budget.
func (h *Burst) WithGroup(name string) slog.Handler {
	return &Burst{next: h.next.WithGroup(name), budget: h.budget}
}
