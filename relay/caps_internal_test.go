//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// pion's deletion events (a permission or channel that expired, RFC 8656
// §9 and §11) free their slots, so an allocation's count does not only
// grow.
func TestCapsCountFollowsPionEvents(t *testing.T) {
	k := allocKey{src: netip.MustParseAddrPort("192.0.2.1:5000"), dst: netip.MustParseAddrPort("192.0.2.2:3478")}
	tr := &allocTracker{live: map[allocKey]liveAlloc{k: {}}}
	lim := &limits{maxPermissions: 2, maxChannels: 1}
	req := func(method stun.Method, peer string, ch uint16) *stun.Message {
		t.Helper()
		ap := netip.MustParseAddrPort(peer)
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest),
			&stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}}
		if ch != 0 {
			setters = append(setters, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(ch >> 8), byte(ch), 0, 0}})
		}
		m, err := stun.Build(setters...)
		if err != nil {
			t.Fatal(err)
		}
		// XORMappedAddress writes XOR-MAPPED-ADDRESS; make it a peer address.
		for i := range m.Attributes {
			if m.Attributes[i].Type == stun.AttrXORMappedAddress {
				m.Attributes[i].Type = stun.AttrXORPeerAddress
			}
		}
		return m
	}
	tr.notePermission(k, net.ParseIP("198.51.100.1"), true)
	tr.notePermission(k, net.ParseIP("198.51.100.2"), true)
	if !tr.capsExceeded(req(stun.MethodCreatePermission, "198.51.100.3:1", 0), k, lim, false) {
		t.Fatal("third peer IP with max 2: not refused")
	}
	if tr.capsExceeded(req(stun.MethodCreatePermission, "198.51.100.2:9", 0), k, lim, false) {
		t.Fatal("known peer IP (another port): refused")
	}
	tr.notePermission(k, net.ParseIP("198.51.100.1"), false) // expired
	if tr.capsExceeded(req(stun.MethodCreatePermission, "198.51.100.3:1", 0), k, lim, false) {
		t.Fatal("after an expiry: new peer still refused")
	}
	tr.noteChannel(k, 0x4000, true)
	if !tr.capsExceeded(req(stun.MethodChannelBind, "198.51.100.2:1", 0x4001), k, lim, false) {
		t.Fatal("second channel with max 1: not refused")
	}
	tr.noteChannel(k, 0x4000, false)
	if tr.capsExceeded(req(stun.MethodChannelBind, "198.51.100.2:1", 0x4001), k, lim, false) {
		t.Fatal("after the channel expired: new channel still refused")
	}
	delete(tr.live, k) // allocation ended: events for it are ignored
	tr.notePermission(k, net.ParseIP("198.51.100.1"), true)
	if len(tr.live) != 0 {
		t.Fatal("event after the allocation ended recreated it")
	}
}
