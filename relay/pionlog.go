package relay

import (
	"fmt"
	"time"

	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// pionLoggerFactory adapts pion's leveled logger to zerolog. pion logs at
// debug level for every packet, with eager arguments; its Trace and Debug
// calls are dropped before any formatting unless log_level is trace. Its
// Info messages (e.g. a peer packet without permission) go to debug, and
// Warn/Error to info/warn through a burst sampler, so a flood of bad
// requests cannot flood the log.
type pionLoggerFactory struct {
	log   zerolog.Logger
	trace bool
	drops *dropCounters
}

func newPionLoggerFactory(log zerolog.Logger, trace bool, drops *dropCounters) *pionLoggerFactory {
	sampled := log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second})
	return &pionLoggerFactory{log: sampled, trace: trace, drops: drops}
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{log: f.log.With().Str("component", "pion/"+scope).Logger(), trace: f.trace, drops: f.drops}
}

type pionLogger struct {
	log   zerolog.Logger
	trace bool
	drops *dropCounters
}

// Formats of pion log calls that are the only trace of a dropped datagram:
// pion has no hook for these drops, so the logger counts them (a string
// compare, on the drop path only).
const (
	pionNoPermission = "No Permission or Channel exists for %v on allocation %v"
	pionOversized    = "Read bytes exceeded MTU, packet is possibly truncated"
)

func emit(e *zerolog.Event, msg string) {
	if e != nil {
		e.Msg(msg)
	}
}

func emitf(e *zerolog.Event, format string, args []any) {
	if e != nil && e.Enabled() {
		e.Msg(fmt.Sprintf(format, args...))
	}
}

func (l *pionLogger) Trace(msg string) {
	if l.trace {
		emit(l.log.Trace(), msg)
	}
}

func (l *pionLogger) Tracef(format string, args ...any) {
	if l.trace {
		emitf(l.log.Trace(), format, args)
	}
}

func (l *pionLogger) Debug(msg string) {
	if l.trace {
		emit(l.log.Trace(), msg)
	}
}

func (l *pionLogger) Debugf(format string, args ...any) {
	if format == pionOversized && l.drops != nil {
		l.drops.oversized.Inc()
	}
	if l.trace {
		emitf(l.log.Trace(), format, args)
	}
}

func (l *pionLogger) Info(msg string) { emit(l.log.Debug(), msg) }
func (l *pionLogger) Infof(format string, args ...any) {
	if format == pionNoPermission && l.drops != nil {
		l.drops.noPermission.Inc()
	}
	emitf(l.log.Debug(), format, args)
}
func (l *pionLogger) Warn(msg string)                   { emit(l.log.Info(), msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { emitf(l.log.Info(), format, args) }
func (l *pionLogger) Error(msg string)                  { emit(l.log.Warn(), msg) }
func (l *pionLogger) Errorf(format string, args ...any) { emitf(l.log.Warn(), format, args) }
