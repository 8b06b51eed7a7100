package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Veth creates a veth pair with one end, aName, in namespace a and the other,
// bName, in namespace b, and sets both up. The pair is created inside a with
// its peer placed straight into b, so neither end ever exists in the root
// namespace.
func Veth(ctx context.Context, a *Namespace, aName string, b *Namespace, bName string) error {
	if err := a.IP(ctx, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name); err != nil {
		return err
	}
	if err := a.IP(ctx, "link", "set", "dev", aName, "up"); err != nil {
		return err
	}
	return b.IP(ctx, "link", "set", "dev", bName, "up")
}

// Pair makes two namespaces of r, roles aRole and bRole, joined by one veth
// with an end named eth0 in each, and assigns aAddrs to a's end and bAddrs
// to b's: two hosts on one link.
func (r *Run) Pair(ctx context.Context, aRole, bRole string, aAddrs, bAddrs []netip.Prefix) (a, b *Namespace, err error) {
	if a, err = r.Namespace(ctx, aRole); err != nil {
		return nil, nil, err
	}
	if b, err = r.Namespace(ctx, bRole); err != nil {
		return nil, nil, err
	}
	if err = Veth(ctx, a, "eth0", b, "eth0"); err != nil {
		return nil, nil, err
	}
	for _, p := range aAddrs {
		if err = a.AddAddr(ctx, "eth0", p); err != nil {
			return nil, nil, err
		}
	}
	for _, p := range bAddrs {
		if err = b.AddAddr(ctx, "eth0", p); err != nil {
			return nil, nil, err
		}
	}
	return a, b, nil
}

// AddBridge creates a bridge named name in the namespace and sets it up.
// Ports forward at once (no STP, forward delay 0) and multicast snooping is
// off, so IPv6 neighbour discovery is flooded from the first packet.
func (ns *Namespace) AddBridge(ctx context.Context, name string) error {
	if err := ns.IP(ctx, "link", "add", name, "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	return ns.IP(ctx, "link", "set", "dev", name, "up")
}

// AttachToBridge makes the link dev (in the namespace) a port of bridge.
func (ns *Namespace) AttachToBridge(ctx context.Context, dev, bridge string) error {
	return ns.IP(ctx, "link", "set", "dev", dev, "master", bridge)
}

// AddAddr assigns p to dev. IPv6 addresses skip duplicate address detection
// (nodad): they are usable at once instead of staying tentative for a
// second or more.
func (ns *Namespace) AddAddr(ctx context.Context, dev string, p netip.Prefix) error {
	args := []string{"addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	return ns.IP(ctx, args...)
}

// DelAddr removes p from dev.
func (ns *Namespace) DelAddr(ctx context.Context, dev string, p netip.Prefix) error {
	return ns.IP(ctx, "addr", "del", p.String(), "dev", dev)
}

// Addrs returns the addresses of the given family (4 or 6) assigned in the
// namespace, on any link, loopback included.
func (ns *Namespace) Addrs(ctx context.Context, family int) ([]netip.Prefix, error) {
	out, err := ns.Output(ctx, fmt.Sprintf("-%d", family), "-o", "addr", "show")
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, line := range strings.Split(out, "\n") {
		// "2: eth0    inet6 2001:db8::10/64 scope global ..."
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				p, err := netip.ParsePrefix(f[i+1])
				if err != nil {
					return nil, fmt.Errorf("netns: %s: addr show: bad prefix %q", ns.Name, f[i+1])
				}
				ps = append(ps, p)
			}
		}
	}
	return ps, nil
}

// Sysctl sets a sysctl of the namespace's network stack, key written with
// dots ("net.ipv6.conf.all.disable_ipv6").
func (ns *Namespace) Sysctl(key, value string) error {
	return ns.Do(func() error {
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		// /proc/sys/net resolves against the calling thread's namespace.
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("netns: %s: sysctl %s=%s: %w", ns.Name, key, value, err)
		}
		return nil
	})
}

// ReadSysctl returns the value of a sysctl of the namespace's network stack.
func (ns *Namespace) ReadSysctl(key string) (string, error) {
	var v string
	err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		if err != nil {
			return fmt.Errorf("netns: %s: sysctl %s: %w", ns.Name, key, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}
