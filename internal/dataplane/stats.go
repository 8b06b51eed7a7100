package dataplane

import "sync/atomic"

// DropReason says why the fast path discarded a datagram. Every drop is
// counted under one reason; String is the reason's name in the relay's
// isthmus_relay_drops_total, which pion's path shares.
type DropReason int

// Drop reasons.
const (
	// DropOversized: the datagram was longer than SlotSize.
	DropOversized DropReason = iota
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
	// DropBandwidth: over the allocation's bandwidth quota.
	DropBandwidth
	// DropQueueFull: the slow-path queue to pion/turn was full.
	DropQueueFull
	// DropSendError: the kernel refused the datagram or the send buffer
	// was full.
	DropSendError
	// DropNoListener: no client-facing socket left for the allocation.
	DropNoListener
	// NumDropReasons is the number of drop reasons.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	"oversized", "malformed", "no_allocation", "no_channel", "no_permission",
	"to_unpermitted_peer", "bandwidth", "queue_full", "send_error", "no_listener",
}

// String returns r's name: the reason label of isthmus_relay_drops_total.
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

// Stats sums the per-core counters. It is the plane's only export: the
// relay turns it into metrics (relay/dataplane.go).
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
