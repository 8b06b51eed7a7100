//go:build e2e

package kfp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

// skbCtx mirrors struct __sk_buff (include/uapi/linux/bpf.h, 192 bytes):
// BPF_PROG_TEST_RUN takes the fields it lets a test set (ingress_ifindex,
// ifindex, gso_size, ...) from it.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto uint32
	Priority, IngressIfindex, Ifindex, TCIndex                                  uint32
	CB                                                                          [5]uint32
	Hash, TCClassid, Data, DataEnd, NapiID, Family, RemoteIP4, LocalIP4         uint32
	RemoteIP6, LocalIP6                                                         [4]uint32
	RemotePort, LocalPort, DataMeta                                             uint32
	FlowKeys, Tstamp                                                            uint64
	WireLen, GSOSegs                                                            uint32
	Sk                                                                          uint64
	GSOSize                                                                     uint32
	TstampType                                                                  uint8
	_                                                                           [3]uint8
	Hwtstamp                                                                    uint64
}

// unitNet is a namespace for running the program with BPF_PROG_TEST_RUN:
// the FIB lookups it makes see this namespace's routes and neighbours.
//
//	cli (veth cli/clip)  192.0.2.1/24, 2001:db8::1/64     forwarding on; client side
//	peer (veth peer/peerp) 198.51.100.1/24, 2001:db8:1::1/64  forwarding on; peer side
//	nofw (veth nofw/nofwp)   192.0.2.129/25, forwarding off
//	small (veth small/smallp) MTU 1280, no address
//
// Permanent neighbours: 192.0.2.2 and 2001:db8::2 (clientMAC) on cli,
// 198.51.100.2, 198.51.100.77 and 2001:db8:1::2, 2001:db8:1::77 (peerMAC)
// on peer. 198.51.100.3 and 2001:db8:1::3 are on-link without neighbour;
// 198.51.100.99 and 2001:db8:1::99 are unreachable routes; .77 and ::77
// are routed through "small", a link with MTU 1280.
type unitNet struct {
	ns                 *netns.Namespace
	cli, peer, nofw    *net.Interface
	clientMAC, peerMAC [6]byte
}

var (
	clientMAC = [6]byte{0x02, 0, 0, 0, 0xc1, 0x02}
	peerMAC   = [6]byte{0x02, 0, 0, 0, 0xe1, 0x02}
)

func newUnitNet(t *testing.T) *unitNet {
	t.Helper()
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := run.Namespace(ctx, "kfpunit")
	if err != nil {
		t.Fatal(err)
	}
	mac := func(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
	cmds := [][]string{
		{"link", "add", "cli", "type", "veth", "peer", "name", "clip"},
		{"link", "add", "peer", "type", "veth", "peer", "name", "peerp"},
		{"link", "add", "nofw", "type", "veth", "peer", "name", "nofwp"},
		{"link", "add", "small", "mtu", "1280", "type", "veth", "peer", "name", "smallp", "mtu", "1280"},
	}
	for _, d := range []string{"cli", "clip", "peer", "peerp", "nofw", "nofwp", "small", "smallp"} {
		cmds = append(cmds, []string{"link", "set", "dev", d, "up"})
	}
	cmds = append(cmds,
		[]string{"addr", "add", "192.0.2.1/25", "dev", "cli"},
		[]string{"addr", "add", "2001:db8::1/64", "dev", "cli", "nodad"},
		[]string{"addr", "add", "198.51.100.1/24", "dev", "peer"},
		[]string{"addr", "add", "2001:db8:1::1/64", "dev", "peer", "nodad"},
		[]string{"addr", "add", "192.0.2.129/25", "dev", "nofw"},
		[]string{"neigh", "add", "192.0.2.2", "lladdr", mac(clientMAC), "dev", "cli", "nud", "permanent"},
		[]string{"neigh", "add", "2001:db8::2", "lladdr", mac(clientMAC), "dev", "cli", "nud", "permanent"},
		[]string{"neigh", "add", "198.51.100.2", "lladdr", mac(peerMAC), "dev", "peer", "nud", "permanent"},
		[]string{"route", "add", "198.51.100.77/32", "dev", "small"},
		[]string{"-6", "route", "add", "2001:db8:1::77/128", "dev", "small"},
		[]string{"neigh", "add", "198.51.100.77", "lladdr", mac(peerMAC), "dev", "small", "nud", "permanent"},
		[]string{"neigh", "add", "2001:db8:1::2", "lladdr", mac(peerMAC), "dev", "peer", "nud", "permanent"},
		[]string{"neigh", "add", "2001:db8:1::77", "lladdr", mac(peerMAC), "dev", "small", "nud", "permanent"},
		[]string{"route", "add", "unreachable", "198.51.100.99/32"},
		[]string{"-6", "route", "add", "unreachable", "2001:db8:1::99/128"},
	)
	for _, c := range cmds {
		if err := ns.IP(ctx, c...); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{
		"net.ipv4.conf.cli.forwarding", "net.ipv6.conf.cli.forwarding",
		"net.ipv4.conf.peer.forwarding", "net.ipv6.conf.peer.forwarding",
	} {
		if err := ns.Sysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	u := &unitNet{ns: ns, clientMAC: clientMAC, peerMAC: peerMAC}
	if err := ns.Do(func() error {
		var err error
		if u.cli, err = net.InterfaceByName("cli"); err != nil {
			return err
		}
		if u.peer, err = net.InterfaceByName("peer"); err != nil {
			return err
		}
		u.nofw, err = net.InterfaceByName("nofw")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return u
}

// newTestTable loads the program or skips when BPF is unavailable here.
func newTestTable(t testing.TB) *Table {
	t.Helper()
	tb, err := New(Config{MaxAllocations: 64, MaxChannels: 64})
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("needs CAP_BPF and CAP_NET_ADMIN to load BPF programs: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Error(err)
		}
	})
	return tb
}

// run runs the program once on frame as if it arrived on dev, inside the
// namespace, and returns its verdict and the frame it left.
func (u *unitNet) run(t testing.TB, prog *ebpf.Program, frame []byte, dev *net.Interface, gsoSize uint32) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+64)
	opts := ebpf.RunOptions{
		Data:    frame,
		DataOut: out,
		Context: skbCtx{IngressIfindex: uint32(dev.Index), Ifindex: uint32(dev.Index), GSOSize: gsoSize},
		Repeat:  1,
	}
	var ret uint32
	if err := u.ns.Do(func() error {
		var err error
		ret, err = prog.Run(&opts)
		return err
	}); err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
