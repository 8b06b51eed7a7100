package kfp

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// The TC ingress program, generated with cilium/ebpf's asm package (pure
// Go, no clang). One program serves both directions and all four family
// combinations; the generator below emits a straight-line path for each
// (input family, direction, output family), so the verifier sees simple
// code and a reader can follow one path at a time.
//
// A datagram's walk:
//
//  1. Parse: an unfragmented, non-GSO IPv4 (no options) or IPv6 (no
//     extension headers) UDP datagram addressed to this host, whose IP and
//     UDP lengths match the frame exactly. Anything else: TC_ACT_OK.
//  2. Look up the flows map. If the payload starts like ChannelData
//     (RFC 8656 §12: first two bits 01), first with its channel number:
//     a client -> peer entry. Then with channel 0: a peer -> client entry.
//  3. The entry's allocation slot must hold exactly the state the entry was
//     installed for (generation, not suspended).
//  4. Checksum state: CHECKSUM_COMPLETE and CHECKSUM_PARTIAL skbs are passed
//     up (see PassChecksumComplete, PassChecksumPartial).
//  5. The new UDP checksum is computed incrementally (RFC 1624 on the RFC
//     1071 sum): one bpf_csum_diff takes the old pseudo-header, ports,
//     lengths and ChannelData header out and the new ones in, so the
//     payload is never read and a datagram that arrived with a wrong
//     checksum leaves with a wrong one (the far end drops it, as it would
//     have dropped the original).
//  6. bpf_fib_lookup from the new source (the relayed address, or the
//     listener) to the new destination, with the new length for the MTU
//     check: source-based policy routing applies. No route, too big,
//     forwarding disabled: TC_ACT_OK, unchanged.
//  7. Only now is the datagram changed: bpf_skb_change_proto when the
//     family changes, bpf_skb_adjust_room(-4 or +4) at the UDP header,
//     then fresh Ethernet, IP, UDP (and ChannelData) headers.
//  8. Counters, then bpf_redirect to the FIB's egress interface with the
//     MACs it returned, or bpf_redirect_neigh when it knew no neighbour.
//
// Family translation follows RFC 7915's stateless rules where they apply
// to a relay that is itself the endpoint of both legs: the new header is
// built from scratch (no options, no extension headers to carry over),
// traffic class / TOS and flow label are 0 and the TTL / hop limit is 64,
// as the relay's own sockets would send; IPv4 goes out with DF set (the
// default of a Linux UDP socket), and the MTU check is the route's. The UDP
// checksum carries over through the pseudo-header change (RFC 7915 §4.5:
// the checksum is updated for the new pseudo-header), except that an IPv4
// datagram without checksum cannot become IPv6 here (§4.5 would compute it
// over the whole payload): it is passed up.

// progLicense is GPL-compatible: bpf_fib_lookup and the redirect helpers
// are GPL-only.
const progLicense = "Dual MIT/GPL"

// Stack frame (offsets from R10, which points past the end of the frame).
const (
	// stKey is the flow key, followed by the rest of the checksum "from"
	// buffer: key bytes 4..40 (addresses, ports) are the first 36 bytes of
	// the from buffer, then the UDP length twice (pseudo-header and header)
	// and the first payload word (the ChannelData header, c2p).
	stKey      = -56
	stFrom     = stKey + keySrc // 44 bytes
	stFromLens = stKey + 40     // UDP length, twice
	stFromCD   = stKey + 44     // ChannelData header (c2p) or zero (p2c)
	stPseudo   = -8             // [0x00 0x11][UDP length]: the rest of a pseudo-header
	stStatsKey = -4             // u32 0: the stats map's only key
	stTo       = -104           // checksum "to" buffer, 44 bytes
	stToLens   = stTo + 36
	stToCD     = stTo + 40
	stFib      = -168 // struct bpf_fib_lookup, 64 bytes
	stNeigh    = -192 // struct bpf_redir_neigh, 20 bytes
	stSlot     = -200 // u32 allocation slot
	stUlen     = -208 // u64 input UDP length
	stCheck    = -216 // u64 input UDP checksum, as stored
	stNewCheck = -224 // u64 output UDP checksum, as stored
	stFibRC    = -232 // u64 bpf_fib_lookup result
	stNewUlen  = -240 // u64 output UDP length
	stPayload  = -248 // u64 application data bytes
	csumLen    = 44   // bytes of each checksum buffer
	addrsLen   = 32   // the two address fields
)

// Registers the program keeps across helper calls (R6-R9 are callee-saved).
const (
	rCtx   = asm.R6 // the __sk_buff
	rData  = asm.R7 // packet start; reloaded after helpers that move data
	rEnd   = asm.R8 // packet end
	rEntry = asm.R9 // the flow value; at the pass/drop exits, the reason
)

// progMaps are the descriptors the program refers to.
type progMaps struct {
	flows, allocs, allocStats, stats int
}

// be16 returns the value that, stored in native byte order, writes v in
// network byte order: what a packet load of a be16 field compares against.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// be32 is be16 for 32-bit fields.
func be32(v uint32) int64 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return int64(int32(binary.NativeEndian.Uint32(b[:])))
}

type builder struct {
	insns   asm.Instructions
	pending string
	m       progMaps
}

// add appends instructions; a pending label names the first.
func (b *builder) add(ins ...asm.Instruction) {
	if b.pending != "" && len(ins) > 0 {
		ins[0] = ins[0].WithSymbol(b.pending)
		b.pending = ""
	}
	b.insns = append(b.insns, ins...)
}

// label names the next instruction.
func (b *builder) label(name string) {
	if b.pending != "" {
		// Two labels on one spot: make the first a jump to the second.
		b.add(asm.Ja.Label(name))
	}
	b.pending = name
}

// copyWords copies n bytes (a multiple of 4) from src+so to dst+do via R2.
func (b *builder) copyWords(dst asm.Register, do int16, src asm.Register, so int16, n int16) {
	for i := int16(0); i < n; i += 4 {
		b.add(asm.LoadMem(asm.R2, src, so+i, asm.Word), asm.StoreMem(dst, do+i, asm.R2, asm.Word))
	}
}

// storeImm64 is `*(u64 *)(dst + off) = imm` (BPF_ST | BPF_MEM | BPF_DW,
// imm sign-extended), which asm.StoreImm does not emit.
func storeImm64(dst asm.Register, off int16, imm int32) asm.Instruction {
	return asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: dst, Offset: off, Constant: int64(imm)}
}

// copyHalves is copyWords in 2-byte steps, for fields that are not
// 4-byte aligned on the stack (the verifier rejects misaligned stack access).
func (b *builder) copyHalves(dst asm.Register, do int16, src asm.Register, so int16, n int16) {
	for i := int16(0); i < n; i += 2 {
		b.add(asm.LoadMem(asm.R2, src, so+i, asm.Half), asm.StoreMem(dst, do+i, asm.R2, asm.Half))
	}
}

// zero clears n bytes (a multiple of 8) of stack at off.
func (b *builder) zero(off int16, n int16) {
	for i := int16(0); i < n; i += 8 {
		b.add(storeImm64(asm.R10, off+i, 0))
	}
}

// loadBE16 loads the be16 packet field at off into r, in host order.
func (b *builder) loadBE16(r asm.Register, off int16) {
	b.add(asm.LoadMem(r, rData, off, asm.Half), asm.HostTo(asm.BE, r, asm.Half))
}

// reload refreshes the packet pointers (after a helper that may move data).
func (b *builder) reload() {
	b.add(
		asm.LoadMem(rData, rCtx, skbData, asm.Word),
		asm.LoadMem(rEnd, rCtx, skbDataEnd, asm.Word),
	)
}

// fold folds the 32-bit one's complement sum in R0 to 16 bits (RFC 1071
// §4.1: add the carries back in, twice covers every carry). R1 is scratch.
func (b *builder) fold() {
	for range 2 {
		b.add(
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.RSh.Imm(asm.R1, 16),
			asm.And.Imm(asm.R0, 0xffff),
			asm.Add.Reg(asm.R0, asm.R1),
		)
	}
}

// lookup calls bpf_map_lookup_elem(fd, R10+keyOff); R0 = value or NULL.
func (b *builder) lookup(fd int, keyOff int16) {
	b.add(
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
	)
}

func passLabel(r PassReason) string { return "pass_" + r.String() }
func dropLabel(r DropReason) string { return "drop_" + r.String() }

// famIdx is the counter index of a family (4 or 6).
func famIdx(fam int) int {
	if fam == 6 {
		return famIPv6
	}
	return famIPv4
}

// ipHdrLen and l4Off describe the IP header of a family.
func ipHdrLen(fam int) int16 {
	if fam == 6 {
		return ip6HdrLen
	}
	return ip4HdrLen
}

func l4Off(fam int) int16 { return ethHdrLen + ipHdrLen(fam) }

func etherTypeOf(fam int) uint16 {
	if fam == 6 {
		return etherIPv6
	}
	return etherIPv4
}

// buildProgram generates the program for the given maps.
func buildProgram(m progMaps) asm.Instructions {
	b := &builder{m: m}
	b.entry()
	for _, in := range []int{4, 6} {
		b.parse(in)
		b.match(in)
		for _, dir := range []int{dirClientToPeer, dirPeerToClient} {
			b.checks(in, dir)
			for _, out := range []int{4, 6} {
				b.rewrite(in, dir, out)
			}
		}
	}
	b.exits()
	return b.insns
}

// entry: frames that cannot be ours leave at once.
func (b *builder) entry() {
	b.add(
		asm.Mov.Reg(rCtx, asm.R1),
		// A GSO/GRO super-packet holds several datagrams behind one header.
		asm.LoadMem(asm.R2, rCtx, skbGSOSize, asm.Word),
		asm.JNE.Imm(asm.R2, 0, passLabel(PassGSO)),
		// Only frames addressed to this host (not promiscuous captures,
		// broadcast or multicast).
		asm.LoadMem(asm.R2, rCtx, skbPktType, asm.Word),
		asm.JNE.Imm(asm.R2, packetHost, passLabel(PassOther)),
		// An offloaded VLAN tag would follow the redirected skb out.
		asm.LoadMem(asm.R2, rCtx, skbVlanPresent, asm.Word),
		asm.JNE.Imm(asm.R2, 0, passLabel(PassOther)),
	)
	b.reload()
	b.add(
		asm.Mov.Reg(asm.R2, rData),
		asm.Add.Imm(asm.R2, ethHdrLen),
		asm.JGT.Reg(asm.R2, rEnd, passLabel(PassShort)),
		asm.LoadMem(asm.R2, rData, ethType, asm.Half),
		asm.JEq.Imm(asm.R2, be16(etherIPv4), "v4_parse"),
		asm.JEq.Imm(asm.R2, be16(etherIPv6), "v6_parse"),
		asm.Ja.Label(passLabel(PassOther)),
	)
}

// parse checks the IP and UDP headers of family fam and fills the key and
// checksum buffers from them.
func (b *builder) parse(fam int) {
	p := fmt.Sprintf("v%d_", fam)
	l4 := l4Off(fam)
	// Headers plus a ChannelData header's worth of payload must be in the
	// linear part of the skb for direct access; pull them in if not.
	need := int32(l4 + udpHdrLen + cdHdrLen)
	b.label(p + "parse")
	b.add(
		asm.Mov.Reg(asm.R2, rData),
		asm.Add.Imm(asm.R2, need),
		asm.JLE.Reg(asm.R2, rEnd, p+"linear"),
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, need),
		asm.FnSkbPullData.Call(),
		asm.JNE.Imm(asm.R0, 0, passLabel(PassShort)),
	)
	b.reload()
	b.add(
		asm.Mov.Reg(asm.R2, rData),
		asm.Add.Imm(asm.R2, need),
		asm.JGT.Reg(asm.R2, rEnd, passLabel(PassShort)),
	)
	b.label(p + "linear")
	if fam == 4 {
		b.add(
			asm.LoadMem(asm.R2, rData, ip4VerIHL, asm.Byte),
			asm.JNE.Imm(asm.R2, ip4VerIHL5, passLabel(PassOther)), // options: not ours
			asm.LoadMem(asm.R2, rData, ip4Proto, asm.Byte),
			asm.JNE.Imm(asm.R2, ipProtoUDP, passLabel(PassOther)),
		)
		b.loadBE16(asm.R2, ip4FragOff)
		b.add(
			asm.And.Imm(asm.R2, ip4MFOffMask),
			asm.JNE.Imm(asm.R2, 0, passLabel(PassFragment)),
		)
		// The IP total length must end the frame, and the UDP length
		// must fill the IP payload: no trailing bytes to carry along.
		b.loadBE16(asm.R3, ip4TotLen)
		b.add(
			asm.Mov.Reg(asm.R2, asm.R3),
			asm.Add.Imm(asm.R2, ethHdrLen),
			asm.LoadMem(asm.R1, rCtx, skbLen, asm.Word),
			asm.JNE.Reg(asm.R1, asm.R2, passLabel(PassLength)),
			asm.Sub.Imm(asm.R3, ip4HdrLen),
		)
	} else {
		b.add(
			asm.LoadMem(asm.R2, rData, ip6VerTCFlow, asm.Byte),
			asm.And.Imm(asm.R2, 0xF0),
			asm.JNE.Imm(asm.R2, 0x60, passLabel(PassOther)),
			asm.LoadMem(asm.R2, rData, ip6Next, asm.Byte),
			asm.JEq.Imm(asm.R2, ipv6NextFrag, passLabel(PassFragment)),
			asm.JNE.Imm(asm.R2, ipProtoUDP, passLabel(PassOther)), // extension headers: not ours
		)
		b.loadBE16(asm.R3, ip6PayLen)
		b.add(
			asm.Mov.Reg(asm.R2, asm.R3),
			asm.Add.Imm(asm.R2, ethHdrLen+ip6HdrLen),
			asm.LoadMem(asm.R1, rCtx, skbLen, asm.Word),
			asm.JNE.Reg(asm.R1, asm.R2, passLabel(PassLength)),
		)
	}
	// R3 = IP payload length; the UDP length must equal it.
	b.loadBE16(asm.R4, l4+udpLen)
	b.add(
		asm.JNE.Reg(asm.R3, asm.R4, passLabel(PassLength)),
		asm.StoreMem(asm.R10, stUlen, asm.R4, asm.DWord),
		asm.LoadMem(asm.R2, rData, l4+udpCheck, asm.Half),
		asm.StoreMem(asm.R10, stCheck, asm.R2, asm.DWord),
	)
	if fam == 6 {
		// RFC 8200 §8.1: IPv6 UDP must carry a checksum; the stack drops it.
		b.add(asm.JEq.Imm(asm.R2, 0, passLabel(PassNoChecksum)))
	}
	// Key: family, addresses (zero-prefixed for IPv4), ports. The channel
	// is filled in by match.
	b.add(
		asm.StoreImm(asm.R10, stKey+keyFamily, int64(fam), asm.Byte),
		asm.StoreImm(asm.R10, stKey+keyFamily+1, 0, asm.Byte),
	)
	if fam == 4 {
		for _, f := range []struct{ key, pkt int16 }{{keySrc, ip4Src}, {keyDst, ip4Dst}} {
			b.add(
				asm.StoreImm(asm.R10, stKey+f.key, 0, asm.Word),
				asm.StoreImm(asm.R10, stKey+f.key+4, 0, asm.Word),
				asm.StoreImm(asm.R10, stKey+f.key+8, 0, asm.Word),
			)
			b.copyWords(asm.R10, stKey+f.key+addrV4InField, rData, f.pkt, 4)
		}
	} else {
		b.copyWords(asm.R10, stKey+keySrc, rData, ip6Src, addrFieldLen)
		b.copyWords(asm.R10, stKey+keyDst, rData, ip6Dst, addrFieldLen)
	}
	b.copyWords(asm.R10, stKey+keyPorts, rData, l4+udpSport, 4)
	// The rest of the checksum "from" buffer and the pseudo-header tail.
	b.add(
		asm.LoadMem(asm.R2, rData, l4+udpLen, asm.Half),
		asm.StoreMem(asm.R10, stFromLens, asm.R2, asm.Half),
		asm.StoreMem(asm.R10, stFromLens+2, asm.R2, asm.Half),
		asm.StoreImm(asm.R10, stPseudo, int64(be16(ipProtoUDP)), asm.Half),
		asm.StoreMem(asm.R10, stPseudo+2, asm.R2, asm.Half),
	)
	b.copyWords(asm.R10, stFromCD, rData, l4+udpHdrLen, 4)
}

// match looks the datagram up: as client -> peer ChannelData first (when
// it looks like ChannelData), then as peer -> client UDP.
func (b *builder) match(fam int) {
	p := fmt.Sprintf("v%d_", fam)
	l4 := l4Off(fam)
	b.add(
		asm.LoadMem(asm.R2, rData, l4+udpHdrLen+cdChannel, asm.Byte),
		asm.And.Imm(asm.R2, cdFirstByte),
		asm.JNE.Imm(asm.R2, cdFirstBits, p+"try_p2c"),
		asm.LoadMem(asm.R2, rData, l4+udpHdrLen+cdChannel, asm.Half),
		asm.StoreMem(asm.R10, stKey+keyChannel, asm.R2, asm.Half),
	)
	b.lookup(b.m.flows, stKey)
	b.add(asm.JNE.Imm(asm.R0, 0, p+"hit_c2p"))

	b.label(p + "try_p2c")
	b.add(asm.StoreImm(asm.R10, stKey+keyChannel, 0, asm.Half))
	b.lookup(b.m.flows, stKey)
	b.add(
		asm.JEq.Imm(asm.R0, 0, passLabel(PassNoEntry)),
		asm.Mov.Reg(rEntry, asm.R0),
		asm.LoadMem(asm.R2, rEntry, valDir, asm.Byte),
		asm.JNE.Imm(asm.R2, dirPeerToClient, passLabel(PassNoEntry)),
		// No ChannelData header on the way in: nothing of the payload
		// leaves the checksum.
		asm.StoreImm(asm.R10, stFromCD, 0, asm.Word),
		asm.Ja.Label(p+"p2c_checks"),
	)

	b.label(p + "hit_c2p")
	b.add(
		asm.Mov.Reg(rEntry, asm.R0),
		asm.LoadMem(asm.R2, rEntry, valDir, asm.Byte),
		asm.JNE.Imm(asm.R2, dirClientToPeer, passLabel(PassNoEntry)),
	)
	// RFC 8656 §12.4: the length field counts the application data. It
	// must end the datagram exactly; padding (§12.5) is userspace's job.
	b.loadBE16(asm.R3, l4+udpHdrLen+cdLength)
	b.add(
		asm.Add.Imm(asm.R3, udpHdrLen+cdHdrLen),
		asm.LoadMem(asm.R4, asm.R10, stUlen, asm.DWord),
		asm.JNE.Reg(asm.R3, asm.R4, passLabel(PassPadding)),
		asm.Ja.Label(p+"c2p_checks"),
	)
}

func dirName(dir int) string {
	if dir == dirClientToPeer {
		return "c2p"
	}
	return "p2c"
}

// checks: the allocation is live and the skb's checksum state allows an
// incremental update; then dispatch on the output family.
func (b *builder) checks(fam, dir int) {
	p := fmt.Sprintf("v%d_%s_", fam, dirName(dir))
	b.label(p + "checks")
	b.add(
		asm.LoadMem(asm.R2, rEntry, valSlot, asm.Word),
		asm.StoreMem(asm.R10, stSlot, asm.R2, asm.Word),
	)
	b.lookup(b.m.allocs, stSlot)
	b.add(
		asm.JEq.Imm(asm.R0, 0, passLabel(PassStale)),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.LoadMem(asm.R3, rEntry, valState, asm.DWord),
		asm.JEq.Reg(asm.R2, asm.R3, p+"live"),
		asm.Xor.Imm(asm.R2, allocSuspended),
		asm.JEq.Reg(asm.R2, asm.R3, passLabel(PassSuspended)),
		asm.Ja.Label(passLabel(PassStale)),
	)
	b.label(p + "live")
	// bpf_csum_update(skb, 0) changes nothing and fails unless the skb is
	// CHECKSUM_COMPLETE: a cheap way to read ip_summed without BTF.
	b.add(
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnCsumUpdate.Call(),
		asm.JSGE.Imm(asm.R0, 0, passLabel(PassChecksumComplete)),
		asm.LoadMem(asm.R2, asm.R10, stCheck, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, p+"family"), // IPv4 without checksum: nothing to guard
		// CHECKSUM_PARTIAL: a local sender's stack left the folded
		// pseudo-header sum in the field (udp4_hwcsum, udp6_set_csum) for
		// the device to finish; moving the header under it would leave a
		// wrong checksum. Sum the pseudo-header and compare.
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, stFrom),
		asm.Mov.Imm(asm.R4, addrsLen),
		asm.LoadMem(asm.R5, asm.R10, stPseudo, asm.Word),
		asm.FnCsumDiff.Call(),
	)
	b.fold()
	b.add(
		asm.LoadMem(asm.R2, asm.R10, stCheck, asm.DWord),
		asm.JEq.Reg(asm.R0, asm.R2, passLabel(PassChecksumPartial)),
	)
	b.label(p + "family")
	b.add(
		asm.LoadMem(asm.R2, rEntry, valFamily, asm.Byte),
		asm.JEq.Imm(asm.R2, 6, p+"to6"),
		asm.Ja.Label(p+"to4"),
	)
}

// rewrite relays a datagram of family in, direction dir, as family out.
func (b *builder) rewrite(in, dir, out int) {
	p := fmt.Sprintf("v%d_%s_to%d_", in, dirName(dir), out)
	b.label(fmt.Sprintf("v%d_%s_to%d", in, dirName(dir), out))
	ipLen := ipHdrLen(out)
	l4 := l4Off(out)
	afOut := int64(afInet)
	if out == 6 {
		afOut = afInet6
	}

	// Lengths. c2p: the 4-byte ChannelData header goes; its length field
	// (checked in match) is the data. p2c: a header comes in front.
	b.add(asm.LoadMem(asm.R2, asm.R10, stUlen, asm.DWord), asm.Mov.Reg(asm.R3, asm.R2), asm.Mov.Reg(asm.R4, asm.R2))
	if dir == dirClientToPeer {
		b.add(asm.Sub.Imm(asm.R3, cdHdrLen), asm.Sub.Imm(asm.R4, udpHdrLen+cdHdrLen))
	} else {
		b.add(asm.Add.Imm(asm.R3, cdHdrLen), asm.Sub.Imm(asm.R4, udpHdrLen))
	}
	b.add(
		asm.StoreMem(asm.R10, stNewUlen, asm.R3, asm.DWord),
		asm.StoreMem(asm.R10, stPayload, asm.R4, asm.DWord),
	)

	// The checksum "to" buffer, laid out like "from": the entry's new
	// addresses and ports, the new UDP length twice, the new ChannelData
	// header (p2c) or nothing (c2p).
	b.copyWords(asm.R10, stTo, rEntry, valSrc, 36)
	b.add(
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.StoreMem(asm.R10, stToLens, asm.R3, asm.Half),
		asm.StoreMem(asm.R10, stToLens+2, asm.R3, asm.Half),
	)
	if dir == dirClientToPeer {
		b.add(asm.StoreImm(asm.R10, stToCD, 0, asm.Word))
	} else {
		b.add(
			asm.LoadMem(asm.R2, rEntry, valChannel, asm.Half),
			asm.StoreMem(asm.R10, stToCD+cdChannel, asm.R2, asm.Half),
			asm.HostTo(asm.BE, asm.R4, asm.Half),
			asm.StoreMem(asm.R10, stToCD+cdLength, asm.R4, asm.Half),
		)
	}

	// UDP checksum, RFC 1624 eqn. 3 over the changed fields:
	// HC' = ~(~HC + sum(new) - sum(old)). bpf_csum_diff computes
	// seed + sum(to) - sum(from) as a 32-bit one's complement sum.
	b.add(asm.LoadMem(asm.R5, asm.R10, stCheck, asm.DWord))
	if in == 4 {
		if out == 4 {
			// RFC 768: an IPv4 datagram sent without checksum (0) may
			// stay without one.
			b.add(
				asm.JNE.Imm(asm.R5, 0, p+"csum"),
				storeImm64(asm.R10, stNewCheck, 0),
				asm.Ja.Label(p+"fib"),
			)
		} else {
			b.add(asm.JEq.Imm(asm.R5, 0, passLabel(PassNoChecksum)))
		}
	}
	b.label(p + "csum")
	b.add(
		asm.Xor.Imm(asm.R5, 0xffff), // ~HC, 16 bits
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, stFrom),
		asm.Mov.Imm(asm.R2, csumLen),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, stTo),
		asm.Mov.Imm(asm.R4, csumLen),
		asm.FnCsumDiff.Call(),
	)
	b.fold()
	b.add(
		asm.Xor.Imm(asm.R0, 0xffff),
		// RFC 768: a computed checksum of 0 is sent as all ones (0 means
		// "none" in IPv4 and is invalid in IPv6).
		asm.JNE.Imm(asm.R0, 0, p+"csum_store"),
		asm.Mov.Imm(asm.R0, 0xffff),
	)
	b.label(p + "csum_store")
	b.add(asm.StoreMem(asm.R10, stNewCheck, asm.R0, asm.DWord))

	// Route from the new source, with the new length for the MTU check.
	// The ingress interface is the lookup's input interface (forwarding
	// must be enabled on it); no DIRECT flag, so ip rules apply.
	b.label(p + "fib")
	b.zero(stFib, fibParamsLen)
	b.add(
		asm.StoreImm(asm.R10, stFib+fibFamily, afOut, asm.Byte),
		asm.StoreImm(asm.R10, stFib+fibL4Proto, ipProtoUDP, asm.Byte),
	)
	b.copyHalves(asm.R10, stFib+fibPorts, rEntry, valPorts, 4)
	b.add(
		asm.LoadMem(asm.R2, asm.R10, stNewUlen, asm.DWord),
		asm.Add.Imm(asm.R2, int32(ipLen)),
		asm.StoreMem(asm.R10, stFib+fibTotLen, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, rCtx, skbIngressIfindex, asm.Word),
		asm.StoreMem(asm.R10, stFib+fibIfindex, asm.R2, asm.Word),
	)
	if out == 4 {
		b.copyWords(asm.R10, stFib+fibSrc, rEntry, valSrc+addrV4InField, 4)
		b.copyWords(asm.R10, stFib+fibDst, rEntry, valDst+addrV4InField, 4)
	} else {
		b.copyWords(asm.R10, stFib+fibSrc, rEntry, valSrc, addrFieldLen)
		b.copyWords(asm.R10, stFib+fibDst, rEntry, valDst, addrFieldLen)
	}
	b.add(
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stFib),
		asm.Mov.Imm(asm.R3, fibParamsLen),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnFibLookup.Call(),
		asm.StoreMem(asm.R10, stFibRC, asm.R0, asm.DWord),
		asm.JEq.Imm(asm.R0, fibSuccess, p+"go"),
		asm.JEq.Imm(asm.R0, fibNoNeigh, p+"go"),
		asm.JEq.Imm(asm.R0, fibFragNeeded, passLabel(PassMTU)),
		asm.JEq.Imm(asm.R0, fibFwdDisabled, passLabel(PassForwardingDisabled)),
		asm.Ja.Label(passLabel(PassUnreachable)),
	)

	// From here on the datagram changes. A failure of the first helper
	// leaves it as it was (pass it up); after a translation it can only
	// be dropped.
	b.label(p + "go")
	failAdjust := passLabel(PassHelper)
	if in != out {
		// bpf_skb_change_proto grows or shrinks the room for the IP
		// header by 20 bytes right after the MAC header and fixes the
		// skb's protocol; the header itself is written below.
		b.add(
			asm.Mov.Reg(asm.R1, rCtx),
			asm.Mov.Imm(asm.R2, be16(etherTypeOf(out))),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnSkbChangeProto.Call(),
			asm.JNE.Imm(asm.R0, 0, passLabel(PassHelper)),
		)
		failAdjust = dropLabel(DropHelper)
	}
	// BPF_ADJ_ROOM_NET adds or removes room right after the IP header:
	// c2p removes the UDP header's first 4 bytes (the rest of the old
	// UDP header and the ChannelData header become the new UDP header);
	// p2c inserts 4 (the new UDP header and ChannelData header go there).
	delta := int32(-cdHdrLen)
	newHdrs := int32(l4 + udpHdrLen)
	if dir == dirPeerToClient {
		delta = cdHdrLen
		newHdrs += cdHdrLen
	}
	b.add(
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, delta),
		asm.Mov.Imm(asm.R3, adjRoomNet),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, failAdjust),
	)
	b.reload()
	b.add(
		asm.Mov.Reg(asm.R2, rData),
		asm.Add.Imm(asm.R2, newHdrs),
		asm.JGT.Reg(asm.R2, rEnd, dropLabel(DropHelper)),
	)

	// Ethernet: the new EtherType; the MACs when the FIB knew them.
	b.add(
		asm.StoreImm(rData, ethType, int64(be16(etherTypeOf(out))), asm.Half),
		asm.LoadMem(asm.R2, asm.R10, stFibRC, asm.DWord),
		asm.JNE.Imm(asm.R2, fibSuccess, p+"ip"),
	)
	b.copyHalves(rData, ethDst, asm.R10, stFib+fibDmac, macAddrLen)
	b.copyHalves(rData, ethSrc, asm.R10, stFib+fibSmac, macAddrLen)

	// A fresh IP header.
	b.label(p + "ip")
	b.add(asm.LoadMem(asm.R3, asm.R10, stNewUlen, asm.DWord))
	if out == 4 {
		b.add(
			asm.StoreImm(rData, ip4VerIHL, ip4VerIHL5, asm.Byte),
			asm.StoreImm(rData, ip4TOS, 0, asm.Byte),
			asm.Mov.Reg(asm.R2, asm.R3),
			asm.Add.Imm(asm.R2, ip4HdrLen),
			asm.HostTo(asm.BE, asm.R2, asm.Half),
			asm.StoreMem(rData, ip4TotLen, asm.R2, asm.Half),
			asm.StoreImm(rData, ip4ID, 0, asm.Half),
			asm.StoreImm(rData, ip4FragOff, int64(be16(ip4FlagDF)), asm.Half),
			asm.StoreImm(rData, ip4TTL, defaultTTL, asm.Byte),
			asm.StoreImm(rData, ip4Proto, ipProtoUDP, asm.Byte),
			asm.StoreImm(rData, ip4Check, 0, asm.Half),
		)
		b.copyWords(rData, ip4Src, rEntry, valSrc+addrV4InField, 4)
		b.copyWords(rData, ip4Dst, rEntry, valDst+addrV4InField, 4)
		// RFC 791 header checksum: RFC 1071 over the 20 bytes.
		b.add(
			asm.Mov.Imm(asm.R1, 0),
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Reg(asm.R3, rData),
			asm.Add.Imm(asm.R3, ethHdrLen),
			asm.Mov.Imm(asm.R4, ip4HdrLen),
			asm.Mov.Imm(asm.R5, 0),
			asm.FnCsumDiff.Call(),
		)
		b.fold()
		b.add(
			asm.Xor.Imm(asm.R0, 0xffff),
			asm.StoreMem(rData, ip4Check, asm.R0, asm.Half),
		)
	} else {
		b.add(
			asm.StoreImm(rData, ip6VerTCFlow, be32(ip6Version), asm.Word),
			asm.Mov.Reg(asm.R2, asm.R3),
			asm.HostTo(asm.BE, asm.R2, asm.Half),
			asm.StoreMem(rData, ip6PayLen, asm.R2, asm.Half),
			asm.StoreImm(rData, ip6Next, ipProtoUDP, asm.Byte),
			asm.StoreImm(rData, ip6Hop, defaultTTL, asm.Byte),
		)
		b.copyWords(rData, ip6Src, rEntry, valSrc, addrFieldLen)
		b.copyWords(rData, ip6Dst, rEntry, valDst, addrFieldLen)
	}

	// UDP header, and the ChannelData header p2c.
	b.copyWords(rData, l4+udpSport, rEntry, valPorts, 4)
	b.add(
		asm.LoadMem(asm.R2, asm.R10, stNewUlen, asm.DWord),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.StoreMem(rData, l4+udpLen, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R10, stNewCheck, asm.DWord),
		asm.StoreMem(rData, l4+udpCheck, asm.R2, asm.Half),
	)
	if dir == dirPeerToClient {
		b.copyWords(rData, l4+udpHdrLen, asm.R10, stToCD, cdHdrLen)
	}

	// Counters: the per-CPU totals, then the allocation's.
	cf, rf := famIdx(in), famIdx(out)
	if dir == dirPeerToClient {
		cf, rf = rf, cf
	}
	idx := int16(dir*4 + cf*2 + rf)
	b.add(asm.StoreImm(asm.R10, stStatsKey, 0, asm.Word))
	b.lookup(b.m.stats, stStatsKey)
	b.add(
		asm.JEq.Imm(asm.R0, 0, p+"alloc_stats"),
		asm.LoadMem(asm.R1, asm.R0, (ctrPackets+idx)*8, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, (ctrPackets+idx)*8, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, (ctrBytes+idx)*8, asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, stPayload, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R0, (ctrBytes+idx)*8, asm.R1, asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, stFibRC, asm.DWord),
		asm.JEq.Imm(asm.R2, fibSuccess, p+"alloc_stats"),
		asm.LoadMem(asm.R1, asm.R0, ctrNeighResolve*8, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, ctrNeighResolve*8, asm.R1, asm.DWord),
	)
	b.label(p + "alloc_stats")
	b.lookup(b.m.allocStats, stSlot)
	b.add(
		asm.JEq.Imm(asm.R0, 0, p+"out"),
		asm.LoadMem(asm.R1, asm.R0, int16(allocStatPackets+dir*8), asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, int16(allocStatPackets+dir*8), asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, int16(allocStatBytes+dir*8), asm.DWord),
		asm.LoadMem(asm.R2, asm.R10, stPayload, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R0, int16(allocStatBytes+dir*8), asm.R1, asm.DWord),
	)

	// Out: straight to the egress device with the FIB's MACs, or through
	// the neighbour subsystem (which resolves and queues) when it had none.
	b.label(p + "out")
	b.add(
		asm.LoadMem(asm.R2, asm.R10, stFibRC, asm.DWord),
		asm.JNE.Imm(asm.R2, fibSuccess, p+"neigh"),
		asm.LoadMem(asm.R1, asm.R10, stFib+fibIfindex, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	)
	b.label(p + "neigh")
	b.add(
		// The FIB's family and next hop (it may be an IPv6 gateway for
		// an IPv4 route, RFC 5549).
		asm.LoadMem(asm.R2, asm.R10, stFib+fibFamily, asm.Byte),
		asm.StoreMem(asm.R10, stNeigh+neighFamily, asm.R2, asm.Word),
	)
	b.copyWords(asm.R10, stNeigh+neighAddr, asm.R10, stFib+fibDst, addrFieldLen)
	b.add(
		asm.LoadMem(asm.R1, asm.R10, stFib+fibIfindex, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stNeigh),
		asm.Mov.Imm(asm.R3, redirNeighLen),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
}

// exits: one stub per reason sets it, then the shared counting exits.
func (b *builder) exits() {
	for r := range NumPassReasons {
		b.label(passLabel(r))
		b.add(asm.Mov.Imm(rEntry, int32(r)), asm.Ja.Label("pass"))
	}
	for r := range NumDropReasons {
		b.label(dropLabel(r))
		b.add(asm.Mov.Imm(rEntry, int32(r)), asm.Ja.Label("drop"))
	}
	for _, e := range []struct {
		name string
		base int
		ret  int32
	}{{"pass", ctrPass, tcActOK}, {"drop", ctrDrop, tcActShot}} {
		b.label(e.name)
		b.add(asm.StoreImm(asm.R10, stStatsKey, 0, asm.Word))
		b.lookup(b.m.stats, stStatsKey)
		b.add(
			asm.JEq.Imm(asm.R0, 0, e.name+"_ret"),
			asm.LSh.Imm(rEntry, 3),
			asm.Add.Reg(asm.R0, rEntry),
			asm.LoadMem(asm.R1, asm.R0, int16(e.base*8), asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, int16(e.base*8), asm.R1, asm.DWord),
		)
		b.label(e.name + "_ret")
		b.add(asm.Mov.Imm(asm.R0, e.ret), asm.Return())
	}
}
