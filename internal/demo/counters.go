package demo

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

// KernelCounters are the kernel's counters of one namespace, by family:
// what went in and out of the relay namespace, whichever relay program runs
// there. In is UDP datagrams delivered to sockets; Out is IP packets
// transmitted (OutTransmits, Linux 6.3 and later; OutRequests before),
// because a relay may send its client-to-peer datagrams on a raw socket
// (isthmus's raw_send), which the UDP counters never see (nor, since 6.3,
// IPv4's OutRequests). They come from /proc/net/snmp and /proc/net/snmp6
// as the namespace sees them.
type KernelCounters struct {
	In4, Out4, In6, Out6 uint64
}

// Sub returns c - before, counter by counter.
func (c KernelCounters) Sub(before KernelCounters) KernelCounters {
	return KernelCounters{c.In4 - before.In4, c.Out4 - before.Out4, c.In6 - before.In6, c.Out6 - before.Out6}
}

func readKernelCounters(ns *netns.Namespace) (KernelCounters, error) {
	var c KernelCounters
	snmp, err := ns.ReadProcNet("snmp")
	if err != nil {
		return c, err
	}
	v4, err := parseSnmpTable(snmp, "Udp")
	if err != nil {
		return c, fmt.Errorf("demo: %s: /proc/net/snmp: %w", ns.Role, err)
	}
	ip4, err := parseSnmpTable(snmp, "Ip")
	if err != nil {
		return c, fmt.Errorf("demo: %s: /proc/net/snmp: %w", ns.Role, err)
	}
	snmp6, err := ns.ReadProcNet("snmp6")
	if err != nil {
		return c, err
	}
	v6 := parseSnmp6(snmp6)
	var ok [4]bool
	c.In4, ok[0] = v4["InDatagrams"]
	c.Out4, ok[1] = firstCounter(ip4, "OutTransmits", "OutRequests")
	c.In6, ok[2] = v6["Udp6InDatagrams"]
	c.Out6, ok[3] = firstCounter(v6, "Ip6OutTransmits", "Ip6OutRequests")
	for i, name := range []string{"Udp InDatagrams", "Ip OutTransmits or OutRequests", "Udp6InDatagrams", "Ip6OutTransmits or Ip6OutRequests"} {
		if !ok[i] {
			return c, fmt.Errorf("demo: %s: kernel counter %s missing", ns.Role, name)
		}
	}
	return c, nil
}

// firstCounter returns the first of names that m holds.
func firstCounter(m map[string]uint64, names ...string) (uint64, bool) {
	for _, n := range names {
		if v, ok := m[n]; ok {
			return v, true
		}
	}
	return 0, false
}

// parseSnmpTable reads one protocol's pair of lines from /proc/net/snmp:
//
//	Udp: InDatagrams NoPorts InErrors OutDatagrams ...
//	Udp: 12 0 0 12 ...
func parseSnmpTable(b []byte, proto string) (map[string]uint64, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		if len(f)-1 != len(names) {
			return nil, fmt.Errorf("%s: %d names but %d values", proto, len(names), len(f)-1)
		}
		m := make(map[string]uint64, len(names))
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s %s=%q: %w", proto, names[i], v, err)
			}
			m[names[i]] = n
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: no counters", proto)
}

// parseSnmp6 reads /proc/net/snmp6: "Udp6InDatagrams    12" per line.
func parseSnmp6(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			m[f[0]] = n
		}
	}
	return m
}
