package netns_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

// Two namespaces joined by a veth, an IPv6 address on each end, and a UDP
// round trip between them. Needs root.
func Example() {
	ctx := context.Background()
	run, err := netns.NewRun()
	if err != nil {
		fmt.Println(err) // netns.ErrNotRoot when not root
		return
	}
	defer run.Close() // kills what runs inside, deletes the namespaces

	a, err := run.Namespace(ctx, "a")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := run.Namespace(ctx, "b")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := netns.Veth(ctx, a, "eth0", b, "eth0"); err != nil {
		fmt.Println(err)
		return
	}
	_ = a.AddAddr(ctx, "eth0", netip.MustParsePrefix("2001:db8:1::1/64"))
	_ = b.AddAddr(ctx, "eth0", netip.MustParsePrefix("2001:db8:1::2/64"))
	err = netns.UDPRoundTrip(a, netip.MustParseAddr("2001:db8:1::1"), b, netip.MustParseAddr("2001:db8:1::2"), time.Second)
	fmt.Println("round trip:", err)
}
