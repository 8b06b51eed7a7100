// Package pionlog routes pion's leveled logging (pion/ice, pion/turn) into
// zerolog. The relay and the SDK both need this; they differ only in how
// pion's levels map onto ours, which each passes as Levels.
package pionlog

import (
	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// Levels maps pion's five levels to zerolog levels. zerolog.Disabled drops
// a level before any formatting, which matters because pion logs some
// levels for every packet, with arguments it evaluates eagerly.
type Levels struct {
	Trace, Debug, Info, Warn, Error zerolog.Level
}

// Factory implements pion's logging.LoggerFactory on a zerolog logger. Log
// carries whatever sampling and level filter the caller wants.
type Factory struct {
	Log    zerolog.Logger
	Levels Levels
	// OnFormat holds callbacks run when pion logs with exactly that format
	// string, at any level and whether or not the level is enabled. For some
	// events (a dropped datagram) pion's log call is the only hook it has.
	OnFormat map[string]func()
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{log: f.Log.With().Str("pion", scope).Logger(), levels: f.Levels, onFormat: f.OnFormat}
}

type logger struct {
	log      zerolog.Logger
	levels   Levels
	onFormat map[string]func()
}

func (l logger) msg(level zerolog.Level, msg string) {
	l.log.WithLevel(level).Msg(msg) // nil event when disabled: a no-op
}

func (l logger) msgf(level zerolog.Level, format string, args []any) {
	if len(l.onFormat) > 0 {
		if f, ok := l.onFormat[format]; ok {
			f()
		}
	}
	l.log.WithLevel(level).Msgf(format, args...) // formats only when enabled
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
