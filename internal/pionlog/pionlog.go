// Package pionlog routes pion's leveled logging (pion/ice, pion/turn) into
// log/slog. The relay and the SDK both need this; they differ only in how
// pion's levels map onto ours, which each passes as Levels.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"math"

	"github.com/pion/logging"
)

// LevelTrace is the level below slog.LevelDebug that stands for trace:
// pion's per-packet logs. zslog maps it to zerolog's trace level.
const LevelTrace = slog.LevelDebug - 4

// Off drops a level before any formatting, which matters because pion logs
// some levels for every packet, with arguments it evaluates eagerly.
const Off = slog.Level(math.MaxInt32)

// Levels maps pion's five levels to slog levels (or Off).
type Levels struct {
	Trace, Debug, Info, Warn, Error slog.Level
}

// Factory implements pion's logging.LoggerFactory on an slog logger. Log
// carries whatever sampling and level filter the caller wants.
type Factory struct {
	Log    *slog.Logger
	Levels Levels
	// OnFormat holds callbacks run when pion logs with exactly that format
	// string, at any level and whether or not the level is enabled. For some
	// events (a dropped datagram) pion's log call is the only hook it has.
	OnFormat map[string]func()
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return logger{log: log.With("pion", scope), levels: f.Levels, onFormat: f.OnFormat}
}

type logger struct {
	log      *slog.Logger
	levels   Levels
	onFormat map[string]func()
}

func (l logger) enabled(level slog.Level) bool {
	return level != Off && l.log.Enabled(context.Background(), level)
}

func (l logger) msg(level slog.Level, msg string) {
	if l.enabled(level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l logger) msgf(level slog.Level, format string, args []any) {
	if len(l.onFormat) > 0 {
		if f, ok := l.onFormat[format]; ok {
			f()
		}
	}
	if l.enabled(level) { // formats only when enabled
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l logger) Trace(msg string)                  { l.msg(l.levels.Trace, msg) }
func (l logger) Tracef(format string, args ...any) { l.msgf(l.levels.Trace, format, args) }
func (l logger) Debug(msg string)                  { l.msg(l.levels.Debug, msg) }
func (l logger) Debugf(format string, args ...any) { l.msgf(l.levels.Debug, format, args) }
func (l logger) Info(msg string)                   { l.msg(l.levels.Info, msg) }
func (l logger) Infof(format string, args ...any)  { l.msgf(l.levels.Info, format, args) }
func (l logger) Warn(msg string)                   { l.msg(l.levels.Warn, msg) }
func (l logger) Warnf(format string, args ...any)  { l.msgf(l.levels.Warn, format, args) }
func (l logger) Error(msg string)                  { l.msg(l.levels.Error, msg) }
func (l logger) Errorf(format string, args ...any) { l.msgf(l.levels.Error, format, args) }
