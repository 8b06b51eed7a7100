package dataplane

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DropReason says why the fast path discarded a datagram. Every drop is
// counted under one reason.
type DropReason int

// Drop reasons.
const (
	// DropTruncated: the datagram was longer than SlotSize.
	DropTruncated DropReason = iota
	// DropMalformed: a ChannelData length field longer than the datagram
	// (RFC 8656 section 12.5).
	DropMalformed
	// DropNoAllocation: ChannelData from a client without an allocation.
	DropNoAllocation
	// DropNoChannel: ChannelData on a channel number that is not bound.
	DropNoChannel
	// DropNoPermission: a peer's datagram to an allocation holding no
	// permission for the peer's IP (expired or never created).
	DropNoPermission
	// DropToUnpermittedPeer: a client's ChannelData or Send indication
	// toward a peer without a permission.
	DropToUnpermittedPeer
	// DropQuota: over the allocation's bandwidth quota.
	DropQuota
	// DropQueueFull: the slow-path queue to pion/turn was full.
	DropQueueFull
	// DropSend: the kernel refused the datagram or the send buffer was full.
	DropSend
	// DropNoListener: no client-facing socket left for the allocation.
	DropNoListener
	// NumDropReasons is the number of drop reasons.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	"truncated", "malformed", "no_allocation", "no_channel", "no_permission",
	"to_unpermitted_peer", "quota", "queue_full", "send", "no_listener",
}

// String returns the metric label of r.
func (r DropReason) String() string {
	if r < 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// Socket kinds, for slow-path counters.
const (
	kindListener = 0
	kindRelay    = 1
)

// Layout of one core's counters, flattened so that publishing is one loop.
const (
	ctrPackets     = 0                              // + dir*4 + fam
	ctrBytes       = ctrPackets + numDirs*4         // + dir*4 + fam
	ctrDrops       = ctrBytes + numDirs*4           // + reason
	ctrSlow        = ctrDrops + int(NumDropReasons) // + socket kind
	ctrReadErrors  = ctrSlow + 2                    // one
	ctrIndications = ctrReadErrors + 1              // + dir
	ctrUnpermPkts  = ctrIndications + numDirs       // + fam
	ctrUnpermBytes = ctrUnpermPkts + 4              // + fam
	ctrWakeups     = ctrUnpermBytes + 4
	ctrReadCalls   = ctrWakeups + 1
	ctrWriteCalls  = ctrReadCalls + 1
	ctrRawWrites   = ctrWriteCalls + 1
	numCounters    = ctrRawWrites + 1
)

// counters are a worker's private tallies for the current wake-up, plain
// integers on the packet path.
type counters [numCounters]uint64

// coreStats are one worker's published totals, written only by that worker
// (once per wake-up) and read by Stats. Padding keeps two workers' totals
// off one cache line.
type coreStats struct {
	v [numCounters]atomic.Uint64
	_ [cacheLine]byte
}

// publish moves the private tallies into the published totals.
func (s *coreStats) publish(c *counters) {
	for i, v := range c {
		if v != 0 {
			s.v[i].Add(v)
			c[i] = 0
		}
	}
}

// Stats are the data plane's totals, summed over all cores.
type Stats struct {
	// Packets and Bytes relayed on the fast path, by direction
	// (ClientToPeer, PeerToClient), client family and relay family
	// (index 0 IPv4, 1 IPv6). Bytes count application data.
	Packets [numDirs][2][2]uint64
	Bytes   [numDirs][2][2]uint64
	// Drops by DropReason.
	Drops [NumDropReasons]uint64
	// SlowListener and SlowRelay count datagrams handed to pion/turn from
	// client-facing and relay sockets (STUN requests, TCP clients' peers,
	// anything unusual). Relayed data stays off them.
	SlowListener, SlowRelay uint64
	// PeerUnpermittedPackets and PeerUnpermittedBytes count peers'
	// datagrams dropped for want of a permission (DropNoPermission), by
	// client and relay family: what a relay counting every datagram read
	// from its relay sockets adds to PeerToClient.
	PeerUnpermittedPackets, PeerUnpermittedBytes [2][2]uint64
	// Indications counts the Send (ClientToPeer) and Data (PeerToClient)
	// indications among Packets.
	Indications [numDirs]uint64
	// ReadErrors counts failed batch reads.
	ReadErrors uint64
	// Wakeups, ReadCalls and WriteCalls count worker wake-ups and batch
	// reads and writes (recvmmsg, sendmmsg): relayed datagrams divided by
	// these is the batching actually achieved. RawWriteCalls counts the
	// sendmmsg calls on the workers' raw sockets (Config.RawSend), which
	// WriteCalls does not include.
	Wakeups, ReadCalls, WriteCalls, RawWriteCalls uint64
	// Allocations is the number of allocations the data plane knows.
	Allocations int
}

// Stats sums the per-core counters.
func (p *Plane) Stats() Stats {
	var sum counters
	for _, cs := range p.cores {
		for i := range sum {
			sum[i] += cs.v[i].Load()
		}
	}
	var st Stats
	for d := range numDirs {
		for f := range 4 {
			st.Packets[d][f/2][f%2] = sum[ctrPackets+d*4+f]
			st.Bytes[d][f/2][f%2] = sum[ctrBytes+d*4+f]
		}
	}
	for f := range 4 {
		st.PeerUnpermittedPackets[f/2][f%2] = sum[ctrUnpermPkts+f]
		st.PeerUnpermittedBytes[f/2][f%2] = sum[ctrUnpermBytes+f]
	}
	copy(st.Drops[:], sum[ctrDrops:ctrDrops+NumDropReasons])
	st.SlowListener = sum[ctrSlow+kindListener]
	st.SlowRelay = sum[ctrSlow+kindRelay]
	st.ReadErrors = sum[ctrReadErrors]
	copy(st.Indications[:], sum[ctrIndications:ctrIndications+numDirs])
	st.Wakeups = sum[ctrWakeups]
	st.ReadCalls = sum[ctrReadCalls]
	st.WriteCalls = sum[ctrWriteCalls]
	st.RawWriteCalls = sum[ctrRawWrites]
	p.mu.Lock()
	st.Allocations = len(p.allocs)
	p.mu.Unlock()
	return st
}

var (
	descPackets = prometheus.NewDesc("isthmus_dataplane_packets_total",
		"Datagrams relayed on the fast path.", []string{"direction", "client_family", "family"}, nil)
	descBytes = prometheus.NewDesc("isthmus_dataplane_bytes_total",
		"Application bytes relayed on the fast path.", []string{"direction", "client_family", "family"}, nil)
	descDrops = prometheus.NewDesc("isthmus_dataplane_drops_total",
		"Datagrams the data plane discarded, by reason.", []string{"reason"}, nil)
	descSlow = prometheus.NewDesc("isthmus_dataplane_slowpath_packets_total",
		"Datagrams handed to pion/turn (control plane), by socket kind.", []string{"socket"}, nil)
	descReadErrors = prometheus.NewDesc("isthmus_dataplane_read_errors_total",
		"Failed batch reads.", nil, nil)
	descIndications = prometheus.NewDesc("isthmus_dataplane_indications_total",
		"Send (client_to_peer) and Data (peer_to_client) indications relayed on the fast path, included in packets_total.",
		[]string{"direction"}, nil)
	descWakeups = prometheus.NewDesc("isthmus_dataplane_wakeups_total",
		"Worker wake-ups (one batch of ready sockets each).", nil, nil)
	descCalls = prometheus.NewDesc("isthmus_dataplane_batch_calls_total",
		"Batch socket calls (recvmmsg, sendmmsg); raw_write counts sendmmsg on raw sockets, not included in write.", []string{"op"}, nil)
	descAllocs = prometheus.NewDesc("isthmus_dataplane_allocations",
		"Allocations known to the data plane.", nil, nil)
)

var (
	dirLabels = [numDirs]string{"client_to_peer", "peer_to_client"}
	famLabels = [2]string{"ip4", "ip6"}
)

// Describe implements prometheus.Collector.
func (p *Plane) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descDrops, descSlow, descIndications, descReadErrors, descWakeups, descCalls, descAllocs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Stats sum per scrape.
func (p *Plane) Collect(ch chan<- prometheus.Metric) {
	st := p.Stats()
	for d := range numDirs {
		for cf := range 2 {
			for rf := range 2 {
				ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue,
					float64(st.Packets[d][cf][rf]), dirLabels[d], famLabels[cf], famLabels[rf])
				ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue,
					float64(st.Bytes[d][cf][rf]), dirLabels[d], famLabels[cf], famLabels[rf])
			}
		}
	}
	for r := range NumDropReasons {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(st.Drops[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(descSlow, prometheus.CounterValue, float64(st.SlowListener), "listener")
	ch <- prometheus.MustNewConstMetric(descSlow, prometheus.CounterValue, float64(st.SlowRelay), "relay")
	ch <- prometheus.MustNewConstMetric(descReadErrors, prometheus.CounterValue, float64(st.ReadErrors))
	for d := range numDirs {
		ch <- prometheus.MustNewConstMetric(descIndications, prometheus.CounterValue, float64(st.Indications[d]), dirLabels[d])
	}
	ch <- prometheus.MustNewConstMetric(descWakeups, prometheus.CounterValue, float64(st.Wakeups))
	ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(st.ReadCalls), "read")
	ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(st.WriteCalls), "write")
	ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(st.RawWriteCalls), "raw_write")
	ch <- prometheus.MustNewConstMetric(descAllocs, prometheus.GaugeValue, float64(st.Allocations))
}
