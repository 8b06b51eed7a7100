package kfp

// Wire formats the program reads and writes, by offset from the start of
// the Ethernet frame (TC programs see the frame from its MAC header). Every
// number the program uses is named here once.

// Ethernet II (IEEE 802.3), no VLAN tag: a tagged frame is passed up.
const (
	ethDst     = 0  // destination MAC, 6 bytes
	ethSrc     = 6  // source MAC, 6 bytes
	ethType    = 12 // EtherType, be16
	ethHdrLen  = 14 // where the IP header starts
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	macAddrLen = 6
)

// IPv4 header without options (RFC 791 §3.1): IHL 5, 20 bytes. A header
// with options is passed up.
const (
	ip4VerIHL     = ethHdrLen + 0  // version 4, IHL 5: 0x45
	ip4TOS        = ethHdrLen + 1  // DSCP/ECN
	ip4TotLen     = ethHdrLen + 2  // total length, be16
	ip4ID         = ethHdrLen + 4  // identification
	ip4FragOff    = ethHdrLen + 6  // flags (3 bits) and fragment offset (13), be16
	ip4TTL        = ethHdrLen + 8  // time to live
	ip4Proto      = ethHdrLen + 9  // protocol
	ip4Check      = ethHdrLen + 10 // header checksum (RFC 1071 over the 20 bytes)
	ip4Src        = ethHdrLen + 12 // source address, 4 bytes
	ip4Dst        = ethHdrLen + 16 // destination address, 4 bytes
	ip4HdrLen     = 20
	ip4VerIHL5    = 0x45
	ip4FlagDF     = 0x4000 // don't fragment, as a UDP socket sends by default (IP_PMTUDISC_WANT)
	ip4MFOffMask  = 0x3FFF // more-fragments flag and offset: non-zero means a fragment
	ip4L4         = ethHdrLen + ip4HdrLen
	ipProtoUDP    = 17
	ipv6NextFrag  = 44 // IPv6 Fragment extension header (RFC 8200 §4.5)
	defaultTTL    = 64 // what the relay's own sockets send with (net.ipv4.ip_default_ttl)
	addrFieldLen  = 16 // an address in our maps and checksum buffers: IPv6, or IPv4 zero-prefixed
	addrV4InField = 12 // where an IPv4 address sits in that 16-byte field
)

// IPv6 fixed header (RFC 8200 §3): 40 bytes. Extension headers are passed
// up (a datagram carrying them is not what a TURN client or peer sends).
const (
	ip6VerTCFlow = ethHdrLen + 0 // version 6, traffic class, flow label: 4 bytes
	ip6PayLen    = ethHdrLen + 4 // payload length, be16
	ip6Next      = ethHdrLen + 6 // next header
	ip6Hop       = ethHdrLen + 7 // hop limit
	ip6Src       = ethHdrLen + 8 // source address, 16 bytes
	ip6Dst       = ethHdrLen + 24
	ip6HdrLen    = 40
	ip6L4        = ethHdrLen + ip6HdrLen
	ip6Version   = 0x60000000 // first word: version 6, traffic class 0, flow label 0
)

// UDP header (RFC 768), relative to the start of the UDP header.
const (
	udpSport  = 0
	udpDport  = 2
	udpLen    = 4 // length of header plus data, be16
	udpCheck  = 6 // RFC 768 checksum over pseudo-header, header and data; 0 = none (IPv4 only)
	udpHdrLen = 8
)

// ChannelData (RFC 8656 §12.4), relative to the start of the UDP payload:
// a channel number (0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFF, which the
// relay still binds) and the length of the application data that follows.
// Over UDP the message may be padded to a multiple of 4 (§12.5): a padded
// or otherwise inconsistent message is passed up, where the userspace plane
// strips the padding.
const (
	cdChannel     = 0
	cdLength      = 2
	cdHdrLen      = 4
	cdFirstByte   = 0xC0 // mask of the two leading bits
	cdFirstBits   = 0x40 // 0b01: ChannelData (STUN starts with 0b00, RFC 7983 §7)
	cdMinHeadroom = cdHdrLen
)

// struct __sk_buff offsets (include/uapi/linux/bpf.h) the program reads.
const (
	skbLen            = 0   // len: bytes in the frame, from the MAC header at TC ingress
	skbPktType        = 4   // pkt_type: PACKET_HOST for frames addressed to us
	skbProtocol       = 16  // protocol (be16 in a u32)
	skbVlanPresent    = 20  // vlan_present: an offloaded VLAN tag is still attached
	skbIngressIfindex = 36  // ingress_ifindex
	skbData           = 76  // data
	skbDataEnd        = 80  // data_end
	skbGSOSegs        = 164 // gso_segs
	skbGSOSize        = 176 // gso_size: non-zero for GSO/GRO super-packets
	packetHost        = 0   // PACKET_HOST
)

// Return codes of a TC program (include/uapi/linux/pkt_cls.h).
const (
	tcActOK       = 0 // continue: the stack delivers it (to the userspace relay)
	tcActShot     = 2 // drop
	tcActRedirect = 7 // what bpf_redirect* return on success
)

// bpf_skb_adjust_room mode, bpf_fib_lookup results and families.
const (
	adjRoomNet = 0 // BPF_ADJ_ROOM_NET: room after the L3 header, i.e. at the UDP header

	fibSuccess      = 0 // BPF_FIB_LKUP_RET_SUCCESS: next hop and MACs known
	fibFwdDisabled  = 5 // BPF_FIB_LKUP_RET_FWD_DISABLED: forwarding off on the ingress interface
	fibNoNeigh      = 7 // BPF_FIB_LKUP_RET_NO_NEIGH: next hop known, its MAC not
	fibFragNeeded   = 8 // BPF_FIB_LKUP_RET_FRAG_NEEDED: larger than the route's MTU
	afInet          = 2
	afInet6         = 10
	fibParamsLen    = 64 // sizeof(struct bpf_fib_lookup)
	redirNeighLen   = 20 // sizeof(struct bpf_redir_neigh)
	fibFamily       = 0  // u8
	fibL4Proto      = 1  // u8
	fibPorts        = 2  // sport, dport: be16 each
	fibTotLen       = 6  // u16, host order: set, the MTU is checked
	fibIfindex      = 8  // in: ingress interface; out: egress interface
	fibSrc          = 16 // ipv4_src or ipv6_src
	fibDst          = 32 // ipv4_dst or ipv6_dst; out: the next hop
	fibSmac         = 52 // out: egress interface MAC
	fibDmac         = 58 // out: next hop MAC
	neighFamily     = 0  // struct bpf_redir_neigh: nh_family u32
	neighAddr       = 4  // ipv4_nh or ipv6_nh
	checksumUnknown = 0  // placeholder for readability
)

// The flows map: one hash map for both directions, keyed by what a
// datagram's headers say, so one lookup finds the entry.
//
// Key (flowKeyLen bytes):
//
//	0  channel  be16  ChannelData channel number for client -> peer; 0 for peer -> client
//	2  family   u8    4 or 6: the family of the datagram's IP header
//	3  zero     u8
//	4  src addr [16]  source address (IPv4 zero-prefixed: ::a.b.c.d in the field)
//	20 dst addr [16]  destination address: a listener (c2p) or relayed address (p2c)
//	36 src port be16, 38 dst port be16
//
// Bytes 4..40 are laid out exactly as the start of the UDP checksum's
// pseudo-header buffer (see prog.go), which is why addresses are
// zero-prefixed: zeros add nothing to an RFC 1071 sum.
const (
	keyChannel = 0
	keyFamily  = 2
	keySrc     = 4
	keyDst     = 20
	keyPorts   = 36
	flowKeyLen = 40
)

// Value (flowValueLen bytes): how to rewrite the datagram.
//
//	0  src addr [16]  new source: the relayed address (c2p) or the listener (p2c)
//	16 dst addr [16]  new destination: the peer (c2p) or the client (p2c)
//	32 src port be16, 34 dst port be16
//	36 channel  be16  channel number to write (p2c); 0 for c2p
//	38 family   u8    4 or 6: the family to send with
//	39 dir      u8    dirClientToPeer or dirPeerToClient
//	40 slot     u32   allocation slot (index into the allocs map)
//	44 zero     u32
//	48 state    u64   the slot's state word this entry is valid for (generation<<1)
const (
	valSrc       = 0
	valDst       = 16
	valPorts     = 32
	valChannel   = 36
	valFamily    = 38
	valDir       = 39
	valSlot      = 40
	valState     = 48
	flowValueLen = 56
)

// Directions, as the dir byte of a flow value and as counter indexes.
const (
	dirClientToPeer = 0
	dirPeerToClient = 1
)

// The allocs map is an array of one u64 per allocation slot: its
// generation shifted left by one, with bit 0 set while suspended. An entry
// is used only while the slot's word equals the entry's state exactly, so
// one 8-byte write (a new generation, or the suspended bit) disables every
// entry of an allocation at once, with no window in which half of its
// entries still forward.
const (
	allocSuspended = 1
	allocStateLen  = 8
)

// The allocStats map is a per-CPU array by slot: packets and bytes
// (application data) per direction.
const (
	allocStatPackets = 0  // + dir*8
	allocStatBytes   = 16 // + dir*8
	allocStatsLen    = 32
)
