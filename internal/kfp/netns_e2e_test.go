//go:build e2e

package kfp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

// A three-host topology with real sockets on both sides of the relay:
//
//	client eth0 192.0.2.10/26 2001:db8:1::10/64 -- r0 192.0.2.1/26 2001:db8:1::1/64   (listener side)
//	peer   eth0 198.51.100.2/24 2001:db8:2::2/64 -- r1 198.51.100.1/24 2001:db8:2::1/64 (relay side)
//
// The program is attached to r0 and r1 in the relay namespace; nothing in
// the relay namespace listens on the relayed addresses, so whatever the
// peer or client receives went through the kernel path. The senders' veths
// have TX checksum offload off, so their datagrams arrive fully
// checksummed, as from a NIC; the CHECKSUM_PARTIAL case turns it on.
type topo struct {
	client, relay, peer *netns.Namespace
	r0MAC, clientMAC    net.HardwareAddr
	clientIfindex       int
}

var (
	clientAddr4, clientAddr6 = netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:1::10")
	listen4, listen6         = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:1::1")
	relay4, relay6           = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:2::1")
	peer4, peer6             = netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:2::2")
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var tp topo
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tp.client, err = run.Namespace(ctx, "kfpc")
	must(err)
	tp.relay, err = run.Namespace(ctx, "kfpr")
	must(err)
	tp.peer, err = run.Namespace(ctx, "kfpp")
	must(err)
	must(netns.Veth(ctx, tp.client, "eth0", tp.relay, "r0"))
	must(netns.Veth(ctx, tp.relay, "r1", tp.peer, "eth0"))
	for _, a := range []struct {
		ns  *netns.Namespace
		dev string
		p   string
	}{
		{tp.client, "eth0", "192.0.2.10/26"}, {tp.client, "eth0", "2001:db8:1::10/64"},
		{tp.relay, "r0", "192.0.2.1/26"}, {tp.relay, "r0", "2001:db8:1::1/64"},
		{tp.relay, "r1", "198.51.100.1/24"}, {tp.relay, "r1", "2001:db8:2::1/64"},
		{tp.peer, "eth0", "198.51.100.2/24"}, {tp.peer, "eth0", "2001:db8:2::2/64"},
	} {
		must(a.ns.AddAddr(ctx, a.dev, netip.MustParsePrefix(a.p)))
	}
	// bpf_fib_lookup works only where forwarding is on (see docs).
	for _, k := range []string{"net.ipv4.conf.r0.forwarding", "net.ipv4.conf.r1.forwarding",
		"net.ipv6.conf.r0.forwarding", "net.ipv6.conf.r1.forwarding"} {
		must(tp.relay.Sysctl(k, "1"))
	}
	must(setTxChecksum(tp.client, "eth0", false))
	must(setTxChecksum(tp.peer, "eth0", false))
	must(tp.client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			tp.clientMAC, tp.clientIfindex = ifi.HardwareAddr, ifi.Index
		}
		return err
	}))
	must(tp.relay.Do(func() error {
		ifi, err := net.InterfaceByName("r0")
		if err == nil {
			tp.r0MAC = ifi.HardwareAddr
		}
		return err
	}))
	return &tp
}

// setTxChecksum switches a device's TX checksum offload (what `ethtool -K
// dev tx on|off` does, with the ETHTOOL_STXCSUM ioctl, so the test needs
// no ethtool binary).
func setTxChecksum(ns *netns.Namespace, dev string, on bool) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ev := struct{ cmd, data uint32 }{unix.ETHTOOL_STXCSUM, 0}
		if on {
			ev.data = 1
		}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data uintptr
			_    [16]byte
		}
		copy(ifr.name[:], dev)
		ifr.data = uintptr(unsafe.Pointer(&ev))
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
			return fmt.Errorf("%s: ETHTOOL_STXCSUM %v: %w", dev, on, e)
		}
		return nil
	})
}

// attach loads the table's program onto r0 and r1 (inside the relay
// namespace: TCX and netlink resolve interfaces in the caller's).
func (tp *topo) attach(t *testing.T, tb *Table, want AttachMode) {
	t.Helper()
	for _, dev := range []string{"r0", "r1"} {
		if err := tp.relay.Do(func() error {
			mode, err := tb.Attach(dev)
			if err == nil && mode != want {
				err = fmt.Errorf("attached with %s, want %s", mode, want)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// udpCsumErrors reads the namespace's UDP InCsumErrors (IPv4 and IPv6).
func udpCsumErrors(t *testing.T, ns *netns.Namespace) uint64 {
	t.Helper()
	var n uint64
	snmp, err := ns.ReadProcNet("snmp")
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, line := range strings.Split(string(snmp), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := range header {
			if header[i] == "InCsumErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				n += v
			}
		}
	}
	snmp6, err := ns.ReadProcNet("snmp6")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(snmp6))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			n += v
		}
	}
	return n
}

// receive reads until n datagrams came or the deadline passed.
func receive(c *net.UDPConn, n int, wait time.Duration) (got [][]byte, from []netip.AddrPort) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	for len(got) < n {
		k, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		got = append(got, append([]byte(nil), buf[:k]...))
		from = append(from, src)
	}
	return got, from
}

const nsBurst = 200 // datagrams per direction and case: bounded, stops by itself

type combo struct {
	name           string
	client, listen netip.Addr
	relay, peer    netip.Addr
}

var combos = []combo{
	{"v4>v4", clientAddr4, listen4, relay4, peer4},
	{"v6>v4", clientAddr6, listen6, relay4, peer4},
	{"v4>v6", clientAddr4, listen4, relay6, peer6},
	{"v6>v6", clientAddr6, listen6, relay6, peer6},
}

// setupChannel opens the client's and the peer's sockets and installs
// their channel.
func setupChannel(t *testing.T, tp *topo, tb *Table, c combo, num, relayPort uint16) (ch Channel, cc, pc *net.UDPConn) {
	t.Helper()
	var err error
	if cc, err = tp.client.ListenUDP(netip.AddrPortFrom(c.client, 0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	if pc, err = tp.peer.ListenUDP(netip.AddrPortFrom(c.peer, 0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	a, err := tb.NewAllocation()
	if err != nil {
		t.Fatal(err)
	}
	ch = Channel{Alloc: a, Number: num,
		Client:   cc.LocalAddr().(*net.UDPAddr).AddrPort(),
		Listener: netip.AddrPortFrom(c.listen, 3478),
		Relay:    netip.AddrPortFrom(c.relay, relayPort),
		Peer:     pc.LocalAddr().(*net.UDPAddr).AddrPort(),
	}
	if err := tb.Install(ch); err != nil {
		t.Fatal(err)
	}
	return ch, cc, pc
}

// TestNamespaceRelay relays real sockets' datagrams through the attached
// program, all four family combinations both ways, and checks that the
// far kernels accepted every checksum.
func TestNamespaceRelay(t *testing.T) {
	tp := newTopo(t)
	tb := newTestTable(t)
	tp.attach(t, tb, AttachTCX)
	for i, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			ch, cc, pc := setupChannel(t, tp, tb, c, uint16(0x4001+i), uint16(50000+i))
			csumC, csumP := udpCsumErrors(t, tp.client), udpCsumErrors(t, tp.peer)
			before := mustStats(t, tb)

			for seq := range nsBurst {
				if _, err := cc.WriteToUDPAddrPort(channelData(ch.Number, rtp(byte(seq))), ch.Listener); err != nil {
					t.Fatal(err)
				}
			}
			got, from := receive(pc, nsBurst, 5*time.Second)
			if len(got) != nsBurst {
				t.Fatalf("peer received %d of %d; kernel stats %+v", len(got), nsBurst, statsDelta(before, mustStats(t, tb)))
			}
			for k := range got {
				if from[k] != ch.Relay || !bytes.Equal(got[k], rtp(byte(k))) {
					t.Fatalf("peer datagram %d from %s: % x", k, from[k], got[k][:min(16, len(got[k]))])
				}
			}

			for seq := range nsBurst {
				if _, err := pc.WriteToUDPAddrPort(rtp(byte(seq)), ch.Relay); err != nil {
					t.Fatal(err)
				}
			}
			got, from = receive(cc, nsBurst, 5*time.Second)
			if len(got) != nsBurst {
				t.Fatalf("client received %d of %d; kernel stats %+v", len(got), nsBurst, statsDelta(before, mustStats(t, tb)))
			}
			for k := range got {
				if from[k] != ch.Listener || !bytes.Equal(got[k], channelData(ch.Number, rtp(byte(k)))) {
					t.Fatalf("client datagram %d from %s: % x", k, from[k], got[k][:min(16, len(got[k]))])
				}
			}

			after := mustStats(t, tb)
			cf, rf := famIdx(family(ch.Client)), famIdx(family(ch.Relay))
			if d := after.Packets[ClientToPeer][cf][rf] - before.Packets[ClientToPeer][cf][rf]; d != nsBurst {
				t.Errorf("kernel relayed %d client -> peer, want %d", d, nsBurst)
			}
			if d := after.Packets[PeerToClient][cf][rf] - before.Packets[PeerToClient][cf][rf]; d != nsBurst {
				t.Errorf("kernel relayed %d peer -> client, want %d", d, nsBurst)
			}
			if n := udpCsumErrors(t, tp.peer) - csumP; n != 0 {
				t.Errorf("peer counted %d UDP checksum errors", n)
			}
			if n := udpCsumErrors(t, tp.client) - csumC; n != 0 {
				t.Errorf("client counted %d UDP checksum errors", n)
			}
		})
	}
	t.Run("detached on close", func(t *testing.T) {
		if out := tcxNames(t, tp.relay, "r0"); !strings.Contains(out, "kfp_ingress") {
			t.Fatalf("TCX ingress of r0 holds %q, not our program", out)
		}
		if err := tb.Close(); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{"r0", "r1"} {
			if out := tcxNames(t, tp.relay, dev); strings.Contains(out, "kfp_ingress") {
				t.Errorf("program still attached to %s after Close: %q", dev, out)
			}
		}
	})
}

// tcxNames lists the names of the TCX ingress programs on dev (BPF_PROG_QUERY
// in the relay namespace; bpftool before 7.3 does not show TCX).
func tcxNames(t *testing.T, ns *netns.Namespace, dev string) string {
	t.Helper()
	var names []string
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				return err
			}
			info, err := prog.Info()
			prog.Close()
			if err != nil {
				return err
			}
			names = append(names, info.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}

// rawSender sends whole Ethernet frames from the client's eth0 (AF_PACKET):
// datagrams with checksums no socket would write.
type rawSender struct {
	fd      int
	ifindex int
}

func newRawSender(t *testing.T, tp *topo) *rawSender {
	t.Helper()
	var fd int
	if err := tp.client.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSender{fd: fd, ifindex: tp.clientIfindex}
}

func (r *rawSender) send(frame []byte) error {
	return unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6})
}

// TestNamespaceChecksumsChecked is the negative case: datagrams whose UDP
// checksum the client got wrong are relayed by the kernel path (which
// does not read the payload) with the error carried over, and the peer's
// kernel drops every one (InCsumErrors). The same frames with the right
// checksum arrive: the receivers really check.
func TestNamespaceChecksumsChecked(t *testing.T) {
	tp := newTopo(t)
	tb := newTestTable(t)
	tp.attach(t, tb, AttachTCX)
	raw := newRawSender(t, tp)
	for i, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			ch, cc, pc := setupChannel(t, tp, tb, c, uint16(0x4101+i), uint16(51000+i))
			// Teach the client's neighbour table nothing: the frames carry MACs.
			frame := func(seq int, bad bool) []byte {
				return testFrame{dstMAC: [6]byte(tp.r0MAC), srcMAC: [6]byte(tp.clientMAC),
					src: ch.Client, dst: ch.Listener, payload: channelData(ch.Number, rtp(byte(seq))), badChecksum: bad}.bytes()
			}
			_ = cc
			csum := udpCsumErrors(t, tp.peer)
			before := mustStats(t, tb)
			for seq := range nsBurst {
				if err := raw.send(frame(seq, true)); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := receive(pc, 1, 500*time.Millisecond); len(got) != 0 {
				t.Fatalf("peer received a datagram with a wrong checksum")
			}
			if n := udpCsumErrors(t, tp.peer) - csum; n != nsBurst {
				t.Errorf("peer counted %d checksum errors, want %d", n, nsBurst)
			}
			cf, rf := famIdx(family(ch.Client)), famIdx(family(ch.Relay))
			if d := mustStats(t, tb).Packets[ClientToPeer][cf][rf] - before.Packets[ClientToPeer][cf][rf]; d != nsBurst {
				t.Errorf("kernel relayed %d, want %d (the drop must be the peer's)", d, nsBurst)
			}
			for seq := range nsBurst {
				if err := raw.send(frame(seq, false)); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := receive(pc, nsBurst, 5*time.Second); len(got) != nsBurst {
				t.Errorf("peer received %d of %d good raw frames", len(got), nsBurst)
			}
		})
	}
}

// TestNamespaceChecksumPartial: with TX checksum offload on the client's
// veth, its datagrams arrive CHECKSUM_PARTIAL. The program hands every one
// to the stack, where a userspace socket on the listener gets them intact,
// and the kernel path relays none (relaying them would deliver 100 %
// checksum errors to the peer).
func TestNamespaceChecksumPartial(t *testing.T) {
	tp := newTopo(t)
	tb := newTestTable(t)
	tp.attach(t, tb, AttachTCX)
	if err := setTxChecksum(tp.client, "eth0", true); err != nil {
		t.Fatal(err)
	}
	for i, c := range []combo{combos[0], combos[3]} {
		t.Run(c.name, func(t *testing.T) {
			ch, cc, pc := setupChannel(t, tp, tb, c, uint16(0x4201+i), uint16(52000+i))
			lc, err := tp.relay.ListenUDP(ch.Listener)
			if err != nil {
				t.Fatal(err)
			}
			defer lc.Close()
			before := mustStats(t, tb)
			for seq := range nsBurst {
				if _, err := cc.WriteToUDPAddrPort(channelData(ch.Number, rtp(byte(seq))), ch.Listener); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := receive(lc, nsBurst, 5*time.Second)
			if len(got) != nsBurst {
				t.Fatalf("userspace listener received %d of %d", len(got), nsBurst)
			}
			for k := range got {
				if !bytes.Equal(got[k], channelData(ch.Number, rtp(byte(k)))) {
					t.Fatalf("datagram %d changed on the way up", k)
				}
			}
			if got, _ := receive(pc, 1, 200*time.Millisecond); len(got) != 0 {
				t.Errorf("peer received a datagram the kernel should have passed up")
			}
			if d := statsDelta(before, mustStats(t, tb)); d.Passed[PassChecksumPartial] != nsBurst {
				t.Errorf("checksum_partial passes %d, want %d (%+v)", d.Passed[PassChecksumPartial], nsBurst, d)
			}
		})
	}
}

// TestNamespaceClsact: the legacy attach relays too, Close removes the
// filter, and a leftover filter of a process that never closed is
// replaced at the next Attach.
func TestNamespaceClsact(t *testing.T) {
	tp := newTopo(t)
	leftover, err := New(Config{MaxAllocations: 4, MaxChannels: 4, Clsact: true})
	if err != nil {
		t.Skipf("cannot load BPF here: %v", err)
	}
	tp.attach(t, leftover, AttachClsact)
	// "Crash": forget the table without Close. Its filter (and through it
	// the program) stays in the kernel.
	leftover.attached = nil
	defer leftover.Close()

	tb, err := New(Config{MaxAllocations: 4, MaxChannels: 4, Clsact: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	tp.attach(t, tb, AttachClsact)
	if n := strings.Count(tcFilters(t, tp.relay, "r0"), clsactName); n != 1 {
		t.Fatalf("%d filters named %s on r0 after re-attach, want 1", n, clsactName)
	}
	ch, cc, pc := setupChannel(t, tp, tb, combos[1], 0x4301, 53000)
	for seq := range nsBurst {
		if _, err := cc.WriteToUDPAddrPort(channelData(ch.Number, rtp(byte(seq))), ch.Listener); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := receive(pc, nsBurst, 5*time.Second); len(got) != nsBurst {
		t.Fatalf("peer received %d of %d through the clsact filter", len(got), nsBurst)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"r0", "r1"} {
		if out := tcFilters(t, tp.relay, dev); strings.Contains(out, clsactName) {
			t.Errorf("filter left on %s after Close:\n%s", dev, out)
		}
	}
}

func tcFilters(t *testing.T, ns *netns.Namespace, dev string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "tc", "filter", "show", "dev", dev, "ingress").CombinedOutput()
	var ee *exec.Error
	if errors.As(err, &ee) {
		t.Skip("needs tc (iproute2)")
	}
	if err != nil {
		t.Fatalf("tc filter show dev %s ingress: %v\n%s", dev, err, out)
	}
	return string(out)
}

// statsDelta is after - before, field by field.
func statsDelta(before, after Stats) Stats {
	var d Stats
	for i := range 2 {
		for j := range 2 {
			for k := range 2 {
				d.Packets[i][j][k] = after.Packets[i][j][k] - before.Packets[i][j][k]
				d.Bytes[i][j][k] = after.Bytes[i][j][k] - before.Bytes[i][j][k]
			}
		}
	}
	d.NeighResolve = after.NeighResolve - before.NeighResolve
	for r := range NumPassReasons {
		d.Passed[r] = after.Passed[r] - before.Passed[r]
	}
	for r := range NumDropReasons {
		d.Dropped[r] = after.Dropped[r] - before.Dropped[r]
	}
	return d
}
