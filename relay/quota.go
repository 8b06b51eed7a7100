//go:build linux

package relay

import (
	"log/slog"
	"net"

	"golang.org/x/sys/unix"
)

// limits are the quota settings, swapped atomically on Reload. A change
// applies to new allocations; bandwidth of live allocations is unchanged.
type limits struct {
	maxAllocations int // 0: only the port range limits
	userQuota      int // 0: unlimited
	bandwidth      int // bytes/s per allocation, 0: unlimited
	maxPermissions int // peer IPs per allocation, 0: unlimited
	maxChannels    int // channels per allocation, 0: unlimited
}

// allowAllocation is the turn.QuotaHandler: a user at user_quota gets 486
// (Allocation Quota Reached, RFC 8656 §7.2 rule 7, keyed by the
// authenticated user, not the client address). The generator enforces the
// same quota again under its lock (then 508) for requests racing here.
func (s *Server) allowAllocation(userID, _ string, _ net.Addr) bool {
	q := s.limits.Load().userQuota
	if q <= 0 || s.gen.userCount(userID) < q {
		return true
	}
	s.metrics.quotaRejected("user")
	return false
}

// Descriptor budget of the derived allocation cap (docs/relay.md). Each
// allocation holds its relay socket; one over TCP or TLS holds its
// connection too, and a dual allocation (RFC 8656) a second relay socket, so
// two descriptors are counted per allocation. fdReserve is kept out of the
// budget for what is not an allocation: the metrics server and its
// reserved descriptor, TCP/TLS connections still authenticating, the data
// plane's raw sockets, log and config files.
const (
	fdsPerAllocation = 2
	fdReserve        = 256
)

// nofileLimit is the soft RLIMIT_NOFILE (the Go runtime raises it to the
// hard limit at start); 0 when unknown or unlimited.
func nofileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return 0
	}
	return rl.Cur
}

// descriptorCap is the number of allocations nofile descriptors leave room
// for after listenerFDs listener sockets and fdReserve; 0 means no cap
// (limit unknown). It is at least 1, so a tiny limit still serves.
func descriptorCap(nofile uint64, listenerFDs int) int {
	if nofile == 0 {
		return 0
	}
	budget := int64(nofile) - int64(listenerFDs) - fdReserve //nolint:gosec // rlimits fit int64
	return int(max(budget/fdsPerAllocation, 1))
}

// newLimits is the quota state for cfg: max_allocations lowered to the
// descriptor cap (an unset max_allocations is the cap; the port pools
// bound the rest).
func (s *Server) newLimits(cfg Config) *limits {
	total := cfg.MaxAllocations
	if s.fdCap > 0 && (total == 0 || total > s.fdCap) {
		if total > s.fdCap {
			s.log.Warn("max_allocations is above what the descriptor limit (RLIMIT_NOFILE) holds; capped (raise LimitNOFILE / ulimit -n)",
				slog.Int("max_allocations", total), slog.Int("descriptor_cap", s.fdCap))
		}
		total = s.fdCap
	}
	return &limits{maxAllocations: total, userQuota: cfg.UserQuota, bandwidth: cfg.AllocationBandwidth,
		maxPermissions: cfg.MaxPermissionsPerAllocation, maxChannels: cfg.MaxChannelsPerAllocation}
}
