//go:build linux

package relay

import (
	"log/slog"
	"time"

	"github.com/isthmusrelay/isthmus/internal/logsample"
	"github.com/isthmusrelay/isthmus/internal/pionlog"
)

// Formats of pion log calls that are the only trace of a dropped datagram:
// pion has no hook for these drops, so the logger counts them.
const (
	pionNoPermission = "No Permission or Channel exists for %v on allocation %v"
	pionOversized    = "Read bytes exceeded MTU, packet is possibly truncated"
)

// pionLogs adapts pion/turn's logging. pion logs at debug level for every
// packet, with eager arguments, so Trace and Debug are dropped before any
// formatting unless log_level is trace. Info (e.g. a peer packet without
// permission) goes to debug, Warn/Error to info/warn, all through a burst
// sampler so a flood of bad requests cannot flood the log.
func pionLogs(log *slog.Logger, trace bool, drops *dropCounters) pionlog.Factory {
	perPacket := pionlog.Off
	if trace {
		perPacket = pionlog.LevelTrace
	}
	return pionlog.Factory{
		Log: slog.New(logsample.New(log.Handler(), 20, time.Second)),
		Levels: pionlog.Levels{
			Trace: perPacket, Debug: perPacket,
			Info: slog.LevelDebug, Warn: slog.LevelInfo, Error: slog.LevelWarn,
		},
		OnFormat: map[string]func(){
			pionNoPermission: drops.noPermission.Inc,
			pionOversized:    drops.oversized.Inc,
		},
	}
}
