package relay

import (
	"time"

	"github.com/rs/zerolog"

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
func pionLogs(log zerolog.Logger, trace bool, drops *dropCounters) pionlog.Factory {
	perPacket := zerolog.Disabled
	if trace {
		perPacket = zerolog.TraceLevel
	}
	return pionlog.Factory{
		Log: log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
		Levels: pionlog.Levels{
			Trace: perPacket, Debug: perPacket,
			Info: zerolog.DebugLevel, Warn: zerolog.InfoLevel, Error: zerolog.WarnLevel,
		},
		OnFormat: map[string]func(){
			pionNoPermission: drops.noPermission.Inc,
			pionOversized:    drops.oversized.Inc,
		},
	}
}
