package kfp

// Direction of relayed traffic, the index of the first dimension of
// Stats.Packets and Stats.Bytes (the same numbering as internal/dataplane).
const (
	// ClientToPeer is ChannelData from a client, relayed as UDP to a peer.
	ClientToPeer = dirClientToPeer
	// PeerToClient is UDP from a peer, relayed as ChannelData to a client.
	PeerToClient = dirPeerToClient
)

// PassReason says why the program handed a datagram to the stack (and so
// to the userspace relay) instead of relaying it. Every datagram the
// program sees and does not relay is counted under exactly one reason.
type PassReason int

// Pass reasons.
const (
	// PassOther: not an IPv4/IPv6 UDP datagram addressed to this host's MAC
	// (ARP, TCP, ICMP, multicast, IPv4 options, IPv6 extension headers, an
	// offloaded VLAN tag). Most of an interface's traffic lands here.
	PassOther PassReason = iota
	// PassFragment: an IPv4 fragment or an IPv6 Fragment header.
	PassFragment
	// PassGSO: a GSO/GRO super-packet (gso_size set): several datagrams
	// in one skb, which the header rewrite would corrupt.
	PassGSO
	// PassShort: shorter than the headers plus a ChannelData header.
	PassShort
	// PassLength: the IP and UDP lengths disagree with the frame (trailing
	// bytes such as Ethernet padding of tiny frames, or a malformed header).
	PassLength
	// PassNoEntry: no flow entry for the datagram's addresses, ports and
	// channel: STUN, unbound channels, other applications' UDP.
	PassNoEntry
	// PassPadding: ChannelData whose length field does not end exactly at
	// the end of the datagram: padded (RFC 8656 §12.5) or malformed.
	PassPadding
	// PassStale: the entry's allocation slot has a newer generation.
	PassStale
	// PassSuspended: the entry's allocation is suspended.
	PassSuspended
	// PassChecksumPartial: the UDP checksum field holds only the folded
	// pseudo-header sum, which is what a CHECKSUM_PARTIAL skb (a local
	// sender behind a veth with TX offload) carries; moving the header
	// would leave it wrong. About 1 in 65536 fully checksummed datagrams
	// also matches and merely takes the slow path.
	PassChecksumPartial
	// PassChecksumComplete: the skb carries CHECKSUM_COMPLETE (a NIC's sum
	// of the whole packet), which the rewrite would leave stale.
	PassChecksumComplete
	// PassNoChecksum: IPv6 UDP with checksum 0 (invalid, RFC 8200 §8.1),
	// or IPv4 UDP without checksum that would leave as IPv6, where one is
	// mandatory and computing it needs the whole payload.
	PassNoChecksum
	// PassMTU: the rewritten datagram is larger than the route's MTU.
	PassMTU
	// PassUnreachable: the FIB has no usable route from the relay address
	// (unreachable, blackhole, prohibit, a local destination, an
	// encapsulating route) or the lookup failed.
	PassUnreachable
	// PassForwardingDisabled: bpf_fib_lookup refuses while forwarding is off
	// on the ingress interface (net.ipv{4,6}.conf.IF.forwarding).
	PassForwardingDisabled
	// PassHelper: a helper (bpf_skb_change_proto, bpf_skb_adjust_room,
	// bpf_skb_pull_data) failed before the datagram was changed.
	PassHelper
	// NumPassReasons is the number of pass reasons.
	NumPassReasons
)

var passReasonNames = [NumPassReasons]string{
	"other", "fragment", "gso", "short", "length", "no_entry", "padding", "stale",
	"suspended", "checksum_partial", "checksum_complete", "no_checksum", "mtu",
	"unreachable", "forwarding_disabled", "helper",
}

// String returns the metric label of r.
func (r PassReason) String() string {
	if r < 0 || r >= NumPassReasons {
		return "unknown"
	}
	return passReasonNames[r]
}

// DropReason says why the program discarded a datagram.
type DropReason int

// Drop reasons.
const (
	// DropHelper: a helper failed after the datagram had been changed
	// (its family already translated), so it can no longer be handed to
	// the stack as it arrived.
	DropHelper DropReason = iota
	// NumDropReasons is the number of drop reasons.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{"helper"}

// String returns the metric label of r.
func (r DropReason) String() string {
	if r < 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// Layout of the per-CPU counter block (one u64 each), the single value of
// the stats map.
const (
	ctrPackets       = 0                             // + dir*4 + clientFam*2 + relayFam
	ctrBytes         = 8                             // + same
	ctrNeighResolve  = 16                            // one
	ctrPass          = 17                            // + PassReason
	ctrDrop          = ctrPass + int(NumPassReasons) // + DropReason
	numCounters      = ctrDrop + int(NumDropReasons) // total
	statsValueLen    = numCounters * 8               // bytes
	famIPv4, famIPv6 = 0, 1                          // family indexes, as internal/dataplane
)

// Stats are the program's totals, summed over all CPUs.
type Stats struct {
	// Packets and Bytes relayed in the kernel, by direction
	// (ClientToPeer, PeerToClient), client family and relay family (index
	// 0 IPv4, 1 IPv6). Bytes count application data, as internal/dataplane
	// does.
	Packets [2][2][2]uint64
	Bytes   [2][2][2]uint64
	// NeighResolve counts relayed datagrams whose next hop had no
	// neighbour entry yet, sent with bpf_redirect_neigh (included above).
	NeighResolve uint64
	// Passed counts datagrams handed to the stack, by PassReason.
	Passed [NumPassReasons]uint64
	// Dropped counts datagrams discarded, by DropReason.
	Dropped [NumDropReasons]uint64
}

// fromCounters sums per-CPU counter blocks.
func statsFromCounters(blocks [][numCounters]uint64) Stats {
	var s Stats
	for _, c := range blocks {
		for dir := range 2 {
			for cf := range 2 {
				for rf := range 2 {
					i := dir*4 + cf*2 + rf
					s.Packets[dir][cf][rf] += c[ctrPackets+i]
					s.Bytes[dir][cf][rf] += c[ctrBytes+i]
				}
			}
		}
		s.NeighResolve += c[ctrNeighResolve]
		for r := range NumPassReasons {
			s.Passed[r] += c[ctrPass+int(r)]
		}
		for r := range NumDropReasons {
			s.Dropped[r] += c[ctrDrop+int(r)]
		}
	}
	return s
}

// AllocStats are one allocation's kernel-relayed totals, by direction.
type AllocStats struct {
	Packets [2]uint64
	Bytes   [2]uint64
}
