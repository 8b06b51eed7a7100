//go:build e2e && linux

package dataplane

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

// TestRawSendAcrossLink relays client datagrams on the workers' raw sockets
// across a real link (veth between two namespaces, MTU 1280), both
// families: the peer's kernel checks the UDP checksum we computed and sees
// the allocation's relayed address as the source. A datagram too big for
// the link with DF set is refused by the raw socket (EMSGSIZE) and must
// still arrive, fragmented by the allocation's own UDP socket.
//
// The far side is on other subnets, which the relay reaches only through
// source-based policy routing (ip rule from <relay IP>): the raw send must
// be routed as coming from the relayed address, as the allocation's bound
// socket would be, or it has no route at all.
func TestRawSendAcrossLink(t *testing.T) {
	run := netnstest.NewRun(t) // root, as the raw sockets need too
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relaySide, far, err := run.Pair(ctx, "relay", "far",
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.2/24"), netip.MustParsePrefix("2001:db8:1::2/64")})
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []struct {
		ns   *netns.Namespace
		args []string
	}{
		{relaySide, []string{"link", "set", "eth0", "mtu", "1280"}},
		{far, []string{"link", "set", "eth0", "mtu", "1280"}},
		{far, []string{"route", "add", "192.0.2.0/24", "dev", "eth0"}},
		{far, []string{"-6", "route", "add", "2001:db8::/64", "dev", "eth0"}},
		// The relay's main table has no route to the far subnets.
		{relaySide, []string{"route", "add", "198.51.100.0/24", "dev", "eth0", "table", "100"}},
		{relaySide, []string{"rule", "add", "from", "192.0.2.1", "table", "100"}},
		{relaySide, []string{"-6", "route", "add", "2001:db8:1::/64", "dev", "eth0", "table", "100"}},
		{relaySide, []string{"-6", "rule", "add", "from", "2001:db8::1", "table", "100"}},
	} {
		if err := cmd.ns.IP(ctx, cmd.args...); err != nil {
			t.Fatal(err)
		}
	}

	// The workers' raw sockets are opened by New, on this thread: inside
	// the relay's namespace.
	var p *Plane
	if err := relaySide.Do(func() (err error) {
		p, err = New(Config{Workers: 1, RawSend: RawSendOn})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	eh := p.EventHandler(turn.EventHandler{})

	listen := func(ns *netns.Namespace, addr string) *net.UDPConn {
		c, err := ns.ListenUDP(netip.MustParseAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	for _, fam := range []struct{ relay, far string }{{"192.0.2.1", "198.51.100.2"}, {"2001:db8::1", "2001:db8:1::2"}} {
		relayAt := func() string { return netip.AddrPortFrom(netip.MustParseAddr(fam.relay), 0).String() }
		farAt := netip.AddrPortFrom(netip.MustParseAddr(fam.far), 0).String()
		ln, err := p.Listener(listen(relaySide, relayAt()))
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.Relay(listen(relaySide, relayAt()), netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		client, peer := listen(far, farAt), listen(far, farAt)
		src, dst := net.UDPAddrFromAddrPort(apOf(client)), ln.LocalAddr()
		eh.OnAllocationCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(), 0)
		eh.OnPermissionCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(), apOf(peer).Addr().AsSlice())
		eh.OnChannelCreated(src, dst, "UDP", "alice", "example.org", r.LocalAddr(), net.UDPAddrFromAddrPort(apOf(peer)), 0x4001)

		before := p.Stats()
		for _, size := range []int{160, 1400} { // 1400 + headers > 1280: EMSGSIZE, then the UDP socket
			payload := bytes.Repeat([]byte{byte(size)}, size)
			if _, err := client.WriteTo(channelData(0x4001, payload, 0), dst); err != nil {
				t.Fatal(err)
			}
			got, from := recv(t, peer)
			if !bytes.Equal(got, payload) || from != r.local {
				t.Fatalf("%s: peer got %d bytes from %v, want %d from the relayed address %v", fam.relay, len(got), from, size, r.local)
			}
		}
		eventually(t, "raw sendmmsg counted", func() bool { return p.Stats().RawWriteCalls >= before.RawWriteCalls+2 })
		if st := p.Stats(); st.Drops != before.Drops {
			t.Fatalf("%s: drops %v, want none", fam.relay, st.Drops)
		}
	}
}
