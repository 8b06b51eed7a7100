package kfp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Errors a caller may branch on.
var (
	// ErrUnsupported: the kernel fast path cannot run here (not Linux).
	ErrUnsupported = errors.New("kfp: kernel fast path unsupported on this platform")
	// ErrFull: no free allocation slot or flow entry left.
	ErrFull = errors.New("kfp: table full")
	// ErrStaleAlloc: the allocation handle was deleted (or never made by
	// this table).
	ErrStaleAlloc = errors.New("kfp: allocation handle is not live")
	// ErrInvalidChannel: a channel the program cannot relay (see
	// Channel.validate for the rules).
	ErrInvalidChannel = errors.New("kfp: channel cannot be relayed in the kernel")
	// ErrClosed: the table was closed.
	ErrClosed = errors.New("kfp: table closed")
)

// Channel numbers relayed (RFC 8656 §12 ends at 0x4FFF; RFC 5766 allowed up
// to 0x7FFF and the relay binds that range, as internal/dataplane does).
const (
	MinChannelNumber = 0x4000
	MaxChannelNumber = 0x7FFF
)

// Alloc is a handle on an allocation slot: the slot index and the
// generation it was handed out with. A handle outlives nothing: once the
// allocation is deleted, every use returns ErrStaleAlloc.
type Alloc struct {
	slot uint32
	gen  uint32
}

// Slot returns the allocation's slot index (for logs).
func (a Alloc) Slot() uint32 { return a.slot }

// state is the allocs map word an entry of this allocation is valid for.
func (a Alloc) state() uint64 { return uint64(a.gen) << 1 }

// Channel is one bound channel of a UDP allocation, both legs: the client's
// 5-tuple (Client, Listener, UDP; RFC 8656 §2.2) with the channel Number,
// and the relayed address with the peer it is bound to.
type Channel struct {
	Alloc Alloc
	// Number is the channel number (MinChannelNumber..MaxChannelNumber).
	Number uint16
	// Client is the client's transport address as the relay sees it.
	Client netip.AddrPort
	// Listener is the relay's address the client sends to: a specific
	// local address, not a wildcard (the program matches the datagram's
	// destination exactly).
	Listener netip.AddrPort
	// Relay is the allocation's relayed transport address.
	Relay netip.AddrPort
	// Peer is the peer bound to the channel.
	Peer netip.AddrPort
}

// validate checks what the program needs: specific, unzoned addresses,
// non-zero ports, one family per leg.
func (ch Channel) validate() error {
	if ch.Number < MinChannelNumber || ch.Number > MaxChannelNumber {
		return fmt.Errorf("%w: channel number %#x outside %#x-%#x", ErrInvalidChannel, ch.Number, MinChannelNumber, MaxChannelNumber)
	}
	for _, f := range []struct {
		name string
		ap   netip.AddrPort
	}{{"client", ch.Client}, {"listener", ch.Listener}, {"relay", ch.Relay}, {"peer", ch.Peer}} {
		a := f.ap.Addr()
		switch {
		case !f.ap.IsValid():
			return fmt.Errorf("%w: %s address missing", ErrInvalidChannel, f.name)
		case a.Zone() != "":
			return fmt.Errorf("%w: %s %s has a zone", ErrInvalidChannel, f.name, f.ap)
		case a.IsUnspecified():
			return fmt.Errorf("%w: %s %s is a wildcard", ErrInvalidChannel, f.name, f.ap)
		case f.ap.Port() == 0:
			return fmt.Errorf("%w: %s %s has port 0", ErrInvalidChannel, f.name, f.ap)
		}
	}
	if family(ch.Client) != family(ch.Listener) {
		return fmt.Errorf("%w: client %s and listener %s differ in family", ErrInvalidChannel, ch.Client, ch.Listener)
	}
	if family(ch.Relay) != family(ch.Peer) {
		return fmt.Errorf("%w: relay %s and peer %s differ in family", ErrInvalidChannel, ch.Relay, ch.Peer)
	}
	return nil
}

// family is 4 or 6; an IPv4-mapped IPv6 address counts as IPv4 (that is
// what goes on the wire).
func family(ap netip.AddrPort) int {
	if ap.Addr().Unmap().Is4() {
		return 4
	}
	return 6
}

// putAddr writes a into a 16-byte address field: IPv6 as is, IPv4
// zero-prefixed (see layout.go for why not ::ffff:a.b.c.d).
func putAddr(b []byte, a netip.Addr) {
	a = a.Unmap()
	if a.Is4() {
		clear(b[:addrV4InField])
		v4 := a.As4()
		copy(b[addrV4InField:addrFieldLen], v4[:])
		return
	}
	v6 := a.As16()
	copy(b[:addrFieldLen], v6[:])
}

// flowKey and flowValue are the map's raw key and value.
type (
	flowKey   [flowKeyLen]byte
	flowValue [flowValueLen]byte
)

func makeKey(channel uint16, src, dst netip.AddrPort) flowKey {
	var k flowKey
	binary.BigEndian.PutUint16(k[keyChannel:], channel)
	k[keyFamily] = byte(family(src))
	putAddr(k[keySrc:], src.Addr())
	putAddr(k[keyDst:], dst.Addr())
	binary.BigEndian.PutUint16(k[keyPorts:], src.Port())
	binary.BigEndian.PutUint16(k[keyPorts+2:], dst.Port())
	return k
}

func makeValue(a Alloc, dir int, channel uint16, src, dst netip.AddrPort) flowValue {
	var v flowValue
	putAddr(v[valSrc:], src.Addr())
	putAddr(v[valDst:], dst.Addr())
	binary.BigEndian.PutUint16(v[valPorts:], src.Port())
	binary.BigEndian.PutUint16(v[valPorts+2:], dst.Port())
	binary.BigEndian.PutUint16(v[valChannel:], channel)
	v[valFamily] = byte(family(src))
	v[valDir] = byte(dir)
	binary.NativeEndian.PutUint32(v[valSlot:], a.slot)
	binary.NativeEndian.PutUint64(v[valState:], a.state())
	return v
}

// entries returns the channel's two map entries: peer -> client (keyed by
// relay and peer, channel 0) and client -> peer (keyed by the client's
// 5-tuple and the channel number).
func (ch Channel) entries() (p2cKey flowKey, p2cVal flowValue, c2pKey flowKey, c2pVal flowValue) {
	p2cKey = makeKey(0, ch.Peer, ch.Relay)
	p2cVal = makeValue(ch.Alloc, dirPeerToClient, ch.Number, ch.Listener, ch.Client)
	c2pKey = makeKey(ch.Number, ch.Client, ch.Listener)
	c2pVal = makeValue(ch.Alloc, dirClientToPeer, 0, ch.Relay, ch.Peer)
	return
}

// id identifies a channel within its allocation for Sync's diff.
type chanID struct {
	number uint16
	peer   netip.AddrPort
}

func (ch Channel) id() chanID { return chanID{ch.Number, ch.Peer} }
