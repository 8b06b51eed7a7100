package gather

import (
	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// pionLogs routes pion/ice and pion/turn logging into our zerolog logger.
// pion logs routine events (a failed check on one pair, a retransmission)
// as warnings, so its levels are shifted down one step: pion Warn becomes
// Debug, pion Error becomes Warn, and everything below is Trace.
type pionLogs struct{ log zerolog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With().Str("pion", scope).Logger()}
}

type pionLogger struct{ log zerolog.Logger }

func (l pionLogger) Trace(msg string)                  { l.log.Trace().Msg(msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.log.Trace().Msgf(format, args...) }
func (l pionLogger) Debug(msg string)                  { l.log.Trace().Msg(msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.log.Trace().Msgf(format, args...) }
func (l pionLogger) Info(msg string)                   { l.log.Trace().Msg(msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.log.Trace().Msgf(format, args...) }
func (l pionLogger) Warn(msg string)                   { l.log.Debug().Msg(msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.log.Debug().Msgf(format, args...) }
func (l pionLogger) Error(msg string)                  { l.log.Warn().Msg(msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.log.Warn().Msgf(format, args...) }
