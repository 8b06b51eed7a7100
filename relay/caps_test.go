//go:build linux

package relay_test

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/internal/stuntest"
	"github.com/isthmusrelay/isthmus/relay"
	"github.com/isthmusrelay/isthmus/relay/relaytest"
)

// capPeer is the i-th loopback peer (no one listens: CreatePermission and
// ChannelBind need none).
func capPeer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)}), 40000)
}

// wantCode fails t unless res is a success (code 0) or the error code,
// with its reason phrase and signed with the client's key (RFC 8489 §9.2.4).
func wantCode(t *testing.T, c *stuntest.Client, what string, res *stun.Message, code int) {
	t.Helper()
	got := stuntest.ErrorCode(res)
	if res.Type.Class == stun.ClassSuccessResponse {
		got = 0
	}
	if got != code {
		t.Fatalf("%s: got %s, want %d", what, stuntest.Describe(res), code)
	}
	if code == 0 {
		return
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(res); err != nil || string(ec.Reason) != "Insufficient Capacity" {
		t.Errorf("%s: reason phrase %q (%v), want \"Insufficient Capacity\"", what, ec.Reason, err)
	}
	if err := stun.NewLongTermIntegrity(c.Username, c.Realm, c.Password).Check(res); err != nil {
		t.Errorf("%s: 508 not signed with the request's key: %v", what, err)
	}
}

// RFC 8656 §9.2 / §11.2: a CreatePermission for a new peer IP beyond
// max_permissions_per_allocation, or a ChannelBind of a new channel beyond
// max_channels_per_allocation, gets 508 Insufficient Capacity; refreshing
// an existing one still succeeds, and a new allocation starts from zero.
func TestPerAllocationCaps(t *testing.T) {
	r := relaytest.Start(t, func(c *relay.Config) {
		c.MaxPermissionsPerAllocation = 3
		c.MaxChannelsPerAllocation = 2
	})
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := r.Dial(t, network, r.V4)
			c.MustAllocate()
			for i := range 3 {
				wantCode(t, c, "CreatePermission peer "+capPeer(i).String(),
					c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(i))), 0)
			}
			wantCode(t, c, "CreatePermission 4th peer, max 3",
				c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(3))), int(stun.CodeInsufficientCapacity))
			wantCode(t, c, "CreatePermission refresh of the 1st peer",
				c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(0))), 0)
			// A request mixing a known and a new peer adds one: refused too.
			wantCode(t, c, "CreatePermission known + new peer",
				c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(1)), stuntest.PeerAddress(capPeer(4))), int(stun.CodeInsufficientCapacity))

			// Channels to the permitted peers (no new permission).
			for i := range 2 {
				wantCode(t, c, "ChannelBind "+capPeer(i).String(),
					c.Request(stun.MethodChannelBind, stuntest.ChannelNumber(uint16(0x4000+i)), stuntest.PeerAddress(capPeer(i))), 0)
			}
			wantCode(t, c, "ChannelBind 3rd channel, max 2",
				c.Request(stun.MethodChannelBind, stuntest.ChannelNumber(0x4002), stuntest.PeerAddress(capPeer(2))), int(stun.CodeInsufficientCapacity))
			wantCode(t, c, "ChannelBind refresh of the 1st channel",
				c.Request(stun.MethodChannelBind, stuntest.ChannelNumber(0x4000), stuntest.PeerAddress(capPeer(0))), 0)
		})
	}

	// The caps are reloadable: 0 lifts them for the next request.
	c := r.Dial(t, "udp", r.V4)
	c.MustAllocate()
	for i := range 3 {
		wantCode(t, c, "CreatePermission", c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(i))), 0)
	}
	cfg := relaytest.Config()
	cfg.MaxPermissionsPerAllocation, cfg.MaxChannelsPerAllocation = 0, 0
	if err := r.Server.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	wantCode(t, c, "CreatePermission 4th peer after reload to 0 (unlimited)",
		c.Request(stun.MethodCreatePermission, stuntest.PeerAddress(capPeer(3))), 0)
}
