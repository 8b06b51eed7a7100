// Package zslog is an slog.Handler that writes through a zerolog.Logger.
// The libraries (relay, gather) log to *slog.Logger so that programs
// embedding them are not tied to our logging choice; the isthmus binary
// keeps zerolog's JSON lines (scripts and tests match on them) by putting
// this handler under every slog.Logger it hands out.
//
// A record becomes one zerolog event: the zerolog logger's own context
// (e.g. component, the timestamp hook) plus the record's attributes, typed
// the way zerolog's event methods type them, so a line has the same keys,
// order and value encodings as a direct zerolog call.
package zslog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rs/zerolog"
)

// LevelTrace is the slog level that maps to zerolog's trace level: slog has
// no trace, and anything below slog.LevelDebug is treated as trace.
const LevelTrace = slog.LevelDebug - 4

// Handler is the slog.Handler; build one with New.
type Handler struct {
	log    zerolog.Logger
	prefix string // group prefix, "a.b." for WithGroup("a").WithGroup("b")
}

// New returns a handler that writes every record through log, whose level
// (and the global level) decides what is enabled.
func New(log zerolog.Logger) *Handler { return &Handler{log: log} }

// Level maps an slog level onto zerolog's.
func Level(l slog.Level) zerolog.Level {
	switch {
	case l < slog.LevelDebug:
		return zerolog.TraceLevel
	case l < slog.LevelInfo:
		return zerolog.DebugLevel
	case l < slog.LevelWarn:
		return zerolog.InfoLevel
	case l < slog.LevelError:
		return zerolog.WarnLevel
	}
	return zerolog.ErrorLevel
}

// Enabled reports whether log writes at l.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	zl := Level(l)
	return zl >= h.log.GetLevel() && zl >= zerolog.GlobalLevel()
}

// Handle writes r as one zerolog event.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	ev := h.log.WithLevel(Level(r.Level))
	if ev == nil {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		addEvent(ev, h.prefix, a)
		return true
	})
	ev.Msg(r.Message)
	return nil
}

// WithAttrs returns a handler whose zerolog context carries attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	ctx := h.log.With()
	for _, a := range attrs {
		ctx = addContext(ctx, h.prefix, a)
	}
	return &Handler{log: ctx.Logger(), prefix: h.prefix}
}

// WithGroup returns a handler that prefixes later keys with "name.".
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{log: h.log, prefix: h.prefix + name + "."}
}

// fields is what zerolog.Event and zerolog.Context have in common for the
// value kinds slog produces.
type fields[T any] interface {
	Str(string, string) T
	Strs(string, []string) T
	Int64(string, int64) T
	Uint64(string, uint64) T
	Float64(string, float64) T
	Bool(string, bool) T
	Dur(string, time.Duration) T
	Time(string, time.Time) T
	AnErr(string, error) T
	Stringer(string, fmt.Stringer) T
	Interface(string, any) T
}

func addEvent(ev *zerolog.Event, prefix string, a slog.Attr) {
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			addEvent(ev, groupPrefix(prefix, a.Key), g)
		}
		return
	}
	add[*zerolog.Event](ev, prefix, a)
}

func addContext(ctx zerolog.Context, prefix string, a slog.Attr) zerolog.Context {
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			ctx = addContext(ctx, groupPrefix(prefix, a.Key), g)
		}
		return ctx
	}
	return add[zerolog.Context](ctx, prefix, a)
}

func groupPrefix(prefix, key string) string {
	if key == "" { // slog inlines a group with an empty key
		return prefix
	}
	return prefix + key + "."
}

// add writes one non-group attribute with zerolog's typed method for it.
func add[T fields[T]](f T, prefix string, a slog.Attr) T {
	if a.Equal(slog.Attr{}) {
		return f
	}
	k := prefix + a.Key
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return f.Str(k, v.String())
	case slog.KindInt64:
		return f.Int64(k, v.Int64())
	case slog.KindUint64:
		return f.Uint64(k, v.Uint64())
	case slog.KindFloat64:
		return f.Float64(k, v.Float64())
	case slog.KindBool:
		return f.Bool(k, v.Bool())
	case slog.KindDuration:
		return f.Dur(k, v.Duration())
	case slog.KindTime:
		return f.Time(k, v.Time())
	}
	switch x := v.Any().(type) {
	case nil: // as zerolog's Err(nil): no field
		return f
	case error:
		return f.AnErr(k, x)
	case []string:
		return f.Strs(k, x)
	case fmt.Stringer:
		return f.Stringer(k, x)
	default:
		return f.Interface(k, x)
	}
}
