package gather

import (
	"log/slog"

	"github.com/isthmusrelay/isthmus/internal/pionlog"
)

// pionLogs routes pion/ice and pion/turn logging into our logger. pion logs
// routine events (a failed check on one pair, a retransmission) as
// warnings, so its levels are shifted down: Warn becomes Debug, Error
// becomes Warn, and everything below is Trace.
func pionLogs(log *slog.Logger) pionlog.Factory {
	return pionlog.Factory{Log: log, Levels: pionlog.Levels{
		Trace: pionlog.LevelTrace, Debug: pionlog.LevelTrace, Info: pionlog.LevelTrace,
		Warn: slog.LevelDebug, Error: slog.LevelWarn,
	}}
}
