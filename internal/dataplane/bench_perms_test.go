package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkPeerFloodPermissions is a peer-side flood (172-byte datagrams,
// relayed to the client as Data indications) against one allocation that
// holds 1 or 30,000 permissions, the flooding peer's installed last. The
// cost per datagram must not depend on the number of permissions (lookups
// by hash, not by scan). One op is one datagram.
func BenchmarkPeerFloodPermissions(b *testing.B) {
	for _, perms := range []int{1, 30000} {
		b.Run(fmt.Sprintf("perms=%d", perms), func(b *testing.B) {
			h, _, lnFeed, relays, feeds := benchPlane(b, 1)
			relay, client := "192.0.2.1:50000", "[2001:db8::10]:40000"
			var last netip.Addr
			for i := 1; i < perms; i++ {
				last = netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
				h.permit(client, tServer, relay, last.String(), true)
			}
			if perms > 1 {
				feeds[0].from = netip.AddrPortFrom(last, 1) // no channel: a Data indication
			} else {
				feeds[0].from = netip.AddrPortFrom(feeds[0].from.Addr(), 1)
			}
			benchRelays(b, h, relays, feeds, lnFeed)
		})
	}
}
