package demo

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

// The seed's addresses (000_d4bbbc5c082a668c.txt, Figure 1 and Appendix A):
// a dual-stack relay at 192.0.2.1 and 2001:db8::1 between an IPv4-only and
// an IPv6-only network; 2001:db8::10 is the IPv6-only user agent.
var (
	RelayIPv4   = netip.MustParseAddr("192.0.2.1")
	RelayIPv6   = netip.MustParseAddr("2001:db8::1")
	UA6Addr     = netip.MustParseAddr("2001:db8::10")
	UA4Addr     = netip.MustParseAddr("192.0.2.10")
	Legacy4Addr = netip.MustParseAddr("192.0.2.20")
	// The dual-stack pair of scenario 4 sits on both networks.
	DS1Addrs = [2]netip.Addr{netip.MustParseAddr("192.0.2.31"), netip.MustParseAddr("2001:db8::31")}
	DS2Addrs = [2]netip.Addr{netip.MustParseAddr("192.0.2.32"), netip.MustParseAddr("2001:db8::32")}
)

// Prefix lengths of the two networks: 192.0.2.0/24 and 2001:db8::/64.
const (
	net4 = 24
	net6 = 64
)

// Topology is the network of RFC 6157 Figure 1, built in namespaces of one run:
//
//	ua4      192.0.2.10 --+                                              +-- ua6 2001:db8::10
//	legacy4  192.0.2.20 --+-- br4 192.0.2.1/24 [relay] br6 2001:db8::1/64 --+
//	ds1/ds2  .31 / .32  --+                                              +-- ds1/ds2 ::31 / ::32
//
// The relay namespace holds two bridges, one per family, each with the
// relay's address of that family; every host hangs off the bridge of its
// family by a veth whose both ends live in namespaces of the run. The relay
// does not forward IP, so the only way across families is a relay program.
type Topology struct {
	Relay, UA6, UA4, Legacy4 *netns.Namespace
	// DS1 and DS2 are dual-stack hosts, present with TopologyOptions.DualStack.
	DS1, DS2 *netns.Namespace
}

// TopologyOptions selects optional parts of the topology.
type TopologyOptions struct {
	// DualStack adds ds1 and ds2, each on both bridges (scenario 4).
	DualStack bool
}

// BuildTopology creates the namespaces and links in run. On error the
// partly built topology is left to run.Close.
func BuildTopology(ctx context.Context, run *netns.Run, opt TopologyOptions) (*Topology, error) {
	var t Topology
	var err error
	if t.Relay, err = run.Namespace(ctx, "relay"); err != nil {
		return nil, err
	}
	relay := t.Relay
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "0"},
		{"net.ipv6.conf.all.forwarding", "0"},
	} {
		if err := relay.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	for _, br := range []string{"br4", "br6"} {
		if err := relay.AddBridge(ctx, br); err != nil {
			return nil, err
		}
	}
	if err := relay.AddAddr(ctx, "br4", netip.PrefixFrom(RelayIPv4, net4)); err != nil {
		return nil, err
	}
	if err := relay.AddAddr(ctx, "br6", netip.PrefixFrom(RelayIPv6, net6)); err != nil {
		return nil, err
	}

	// plug connects host's dev to bridge br of the relay namespace through
	// the port "p-<role>-<n>" and gives dev the address a.
	plug := func(host *netns.Namespace, dev, br string, n int, a netip.Addr) error {
		port := fmt.Sprintf("p%d-%s", n, host.Role)
		if len(port) > 15 {
			return fmt.Errorf("demo: topology: port name %q longer than IFNAMSIZ", port)
		}
		if err := netns.Veth(ctx, relay, port, host, dev); err != nil {
			return err
		}
		if err := relay.AttachToBridge(ctx, port, br); err != nil {
			return err
		}
		bits := net4
		if a.Is6() {
			bits = net6
		}
		return host.AddAddr(ctx, dev, netip.PrefixFrom(a, bits))
	}

	// ua6 is IPv6-only: not even 127.0.0.1, so any IPv4 send fails with
	// "network unreachable".
	if t.UA6, err = run.Namespace(ctx, "ua6"); err != nil {
		return nil, err
	}
	if err := t.UA6.DelAddr(ctx, "lo", netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		return nil, err
	}
	if err := plug(t.UA6, "eth0", "br6", 0, UA6Addr); err != nil {
		return nil, err
	}

	// ua4 and legacy4 are IPv4-only: IPv6 is off before their link exists,
	// so it never gets even a link-local address.
	for _, h := range []struct {
		ns   **netns.Namespace
		role string
		addr netip.Addr
	}{{&t.UA4, "ua4", UA4Addr}, {&t.Legacy4, "legacy4", Legacy4Addr}} {
		if *h.ns, err = run.Namespace(ctx, h.role); err != nil {
			return nil, err
		}
		if err := disableIPv6(*h.ns); err != nil {
			return nil, err
		}
		if err := plug(*h.ns, "eth0", "br4", 0, h.addr); err != nil {
			return nil, err
		}
	}

	if opt.DualStack {
		for _, h := range []struct {
			ns    **netns.Namespace
			role  string
			addrs [2]netip.Addr
		}{{&t.DS1, "ds1", DS1Addrs}, {&t.DS2, "ds2", DS2Addrs}} {
			if *h.ns, err = run.Namespace(ctx, h.role); err != nil {
				return nil, err
			}
			if err := plug(*h.ns, "eth4", "br4", 4, h.addrs[0]); err != nil {
				return nil, err
			}
			if err := plug(*h.ns, "eth6", "br6", 6, h.addrs[1]); err != nil {
				return nil, err
			}
		}
	}
	return &t, nil
}

func disableIPv6(ns *netns.Namespace) error {
	for _, k := range []string{"all", "default", "lo"} {
		if err := ns.Sysctl("net.ipv6.conf."+k+".disable_ipv6", "1"); err != nil {
			return err
		}
	}
	return nil
}
