package bench

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/netaddr"
)

func TestSourceForLoopback(t *testing.T) {
	for _, tc := range []struct {
		family netaddr.Family
		server netip.AddrPort
		want   string
	}{
		{netaddr.IPv4, netip.MustParseAddrPort("127.0.0.1:3478"), "127.0.0.1"},
		{netaddr.IPv6, netip.MustParseAddrPort("[::1]:3478"), "::1"},
		{netaddr.IPv4, netip.AddrPort{}, "127.0.0.1"}, // no server of this family: loopback
		{netaddr.IPv6, netip.AddrPort{}, "::1"},
	} {
		got, err := sourceFor(tc.family, tc.server)
		if err != nil || got.String() != tc.want {
			t.Errorf("sourceFor(%s, %v) = %v, %v; want %s", tc.family, tc.server, got, err, tc.want)
		}
	}
}

// TestSourceForRoutedRelay puts the generator's side in a namespace joined
// by veth to a relay-side namespace: the legs must use the generator's own
// address on the link, and a relay with no route to it is an error that
// names the family and the address.
func TestSourceForRoutedRelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces with ip netns + veth")
	}
	run, err := netns.NewRun()
	if errors.Is(err, netns.ErrNoIproute2) {
		t.Skip("needs iproute2 (ip netns)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relaySide, err := run.Namespace(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	genSide, err := run.Namespace(ctx, "gen")
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(ctx, relaySide, "eth0", genSide, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns *netns.Namespace
		p  string
	}{
		{relaySide, "192.0.2.1/24"}, {relaySide, "2001:db8::1/64"},
		{genSide, "192.0.2.2/24"}, {genSide, "2001:db8::2/64"},
	} {
		if err := a.ns.AddAddr(ctx, "eth0", netip.MustParsePrefix(a.p)); err != nil {
			t.Fatal(err)
		}
	}
	err = genSide.Do(func() error {
		for _, tc := range []struct {
			family netaddr.Family
			server string
			want   string
		}{
			{netaddr.IPv4, "192.0.2.1:3478", "192.0.2.2"},
			{netaddr.IPv6, "[2001:db8::1]:3478", "2001:db8::2"},
		} {
			got, err := sourceFor(tc.family, netip.MustParseAddrPort(tc.server))
			if err != nil || got.String() != tc.want {
				t.Errorf("sourceFor(%s, %s) = %v, %v; want %s", tc.family, tc.server, got, err, tc.want)
			}
		}
		_, err := sourceFor(netaddr.IPv4, netip.MustParseAddrPort("198.51.100.1:3478"))
		if err == nil || !strings.Contains(err.Error(), "no IPv4 route to the relay at 198.51.100.1:3478") {
			t.Errorf("sourceFor toward an unrouted relay: err = %v, want no-route error", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
