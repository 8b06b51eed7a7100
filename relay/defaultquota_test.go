package relay_test

import (
	"testing"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/relay"
)

// With the shipped defaults one user cannot take every relay port: the
// default user_quota stops them with 486 (RFC 8656 §7.2 rule 7) long before
// the port range runs out, and another user still gets an allocation.
// Without a default quota the first user took all free ports and every
// other call got 508.
func TestDefaultUserQuotaLeavesPortsForOthers(t *testing.T) {
	d := relay.DefaultConfig()
	if d.UserQuota <= 0 || d.UserQuota >= d.MaxPort-d.MinPort {
		t.Fatalf("default user_quota = %d, want a cap well below the %d default relay ports", d.UserQuota, d.MaxPort-d.MinPort+1)
	}
	r := startRelay(t, func(c *relay.Config) {
		c.Users = []string{"alice:a", "bob:b"}
		c.LogLevel = "info"
	})
	got := 0
	for i := 0; i <= d.UserQuota; i++ {
		c := dialSTUN(t, "udp", r.Addr("4"), "alice", "a")
		res := c.Allocate()
		if res.Type.Class == stun.ClassSuccessResponse {
			got++
			continue
		}
		if code := errorCode(res); code != int(stun.CodeAllocQuotaReached) {
			t.Fatalf("alice allocation %d: got %s, want success or 486", i+1, describe(res))
		}
		break
	}
	if got != d.UserQuota {
		t.Fatalf("alice got %d allocations with the defaults, want the default user_quota %d", got, d.UserQuota)
	}
	bob := dialSTUN(t, "udp", r.Addr("4"), "bob", "b")
	bob.MustAllocate()
}
