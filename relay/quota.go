package relay

import "net"

// limits are the quota settings, swapped atomically on Reload. A change
// applies to new allocations; bandwidth of live allocations is unchanged.
type limits struct {
	maxAllocations int // 0: only the port range limits
	userQuota      int // 0: unlimited
	bandwidth      int // bytes/s per allocation, 0: unlimited
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
