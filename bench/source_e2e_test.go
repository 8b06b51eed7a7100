//go:build e2e

package bench

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
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
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, genSide, err := run.Pair(ctx, "relay", "gen",
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")})
	if err != nil {
		t.Fatal(err)
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
