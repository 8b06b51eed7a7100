package dataplane

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/internal/channeldata"
)

// Send and Data indications (RFC 8656 sections 11.4 and 11.6) on the fast
// path: a client's Send indication to a permitted peer is unwrapped and sent
// from the relay socket; a permitted peer's datagram without a channel is
// wrapped in a Data indication. pion/stun decodes and encodes the messages
// into the worker's own slot buffers, so neither allocates.

// Sizes of a Data indication around the application data.
const (
	stunHeaderLen = 20
	attrHeaderLen = 4
	// xorPeerAddressLen is the XOR-PEER-ADDRESS attribute with its header:
	// family and port (4 bytes) and the address (4 or 16 bytes).
	xorPeerAddressLen4 = attrHeaderLen + 4 + 4
	xorPeerAddressLen6 = attrHeaderLen + 4 + 16
)

var (
	sendIndication = stun.NewType(stun.MethodSend, stun.ClassIndication)
	dataIndication = stun.NewType(stun.MethodData, stun.ClassIndication)
)

// indications is a worker's scratch for STUN indications.
type indications struct {
	msg stun.Message
	ip  [16]byte
	// rng draws transaction IDs: ChaCha8 is a CSPRNG (RFC 8489 section 5
	// wants cryptographically random IDs), seeded once per worker and
	// allocation-free per draw.
	rng *rand.ChaCha8
}

func newIndications() *indications {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on Linux (getrandom)
	return &indications{rng: rand.NewChaCha8(seed)}
}

// isSendIndication reports whether b is a STUN Send indication (RFC 8489
// section 5: two zero bits, the magic cookie, the message type).
func isSendIndication(b []byte) bool {
	if len(b) < stunHeaderLen || b[0]&0xC0 != 0 || !stun.IsMessage(b) {
		return false
	}
	var t stun.MessageType
	t.ReadValue(binary.BigEndian.Uint16(b))
	return t == sendIndication
}

// parseSend decodes a Send indication in place and returns its peer and its
// DATA (a sub-slice of b). ok is false when the message is malformed or
// carries an unknown comprehension-required attribute: pion then handles
// it, with its own error behaviour.
func (x *indications) parseSend(b []byte) (peer netip.AddrPort, data []byte, ok bool) {
	m := &x.msg
	m.Raw = b
	if m.Decode() != nil {
		return peer, nil, false
	}
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrXORPeerAddress, stun.AttrData, stun.AttrDontFragment:
			// Known, comprehension-required attributes of a Send
			// indication (AttrType.Known builds a map per call).
		default:
			if a.Type.Required() && !a.Type.Known() {
				return peer, nil, false
			}
		}
	}
	xa := stun.XORMappedAddress{IP: x.ip[:]}
	if xa.GetFromAs(m, stun.AttrXORPeerAddress) != nil || xa.Port <= 0 || xa.Port > 0xffff {
		return peer, nil, false
	}
	data, err := m.Get(stun.AttrData)
	if err != nil {
		return peer, nil, false
	}
	ip, ok := netip.AddrFromSlice(xa.IP)
	if !ok {
		return peer, nil, false
	}
	m.Raw = nil
	return netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port)), data, true
}

// dataOffset is where the application data of a Data indication from peer
// starts.
func dataOffset(peer netip.AddrPort) int {
	if peer.Addr().Is4() {
		return stunHeaderLen + xorPeerAddressLen4 + attrHeaderLen
	}
	return stunHeaderLen + xorPeerAddressLen6 + attrHeaderLen
}

// buildData turns mem, holding n bytes of a peer's datagram at
// mem[channeldata.HeaderLen:], into a Data indication from peer and returns
// it (a prefix of mem). ok is false when the indication would not fit the
// slot; the caller hands the datagram to pion instead.
func (x *indications) buildData(mem []byte, n int, peer netip.AddrPort) ([]byte, bool) {
	off := dataOffset(peer)
	if off+n+3 > len(mem) { // +3: DATA padding to 4 bytes
		return nil, false
	}
	// Move the data to where the DATA attribute's value goes; Add below
	// then copies it onto itself.
	copy(mem[off:off+n], mem[channeldata.HeaderLen:channeldata.HeaderLen+n])

	m := &x.msg
	m.Raw = mem[:0]
	m.Reset()
	m.Type = dataIndication
	_, _ = x.rng.Read(m.TransactionID[:])
	m.WriteHeader()
	var ip []byte
	if a := peer.Addr(); a.Is4() {
		a4 := a.As4()
		ip = x.ip[:copy(x.ip[:], a4[:])]
	} else {
		a16 := a.As16()
		ip = x.ip[:copy(x.ip[:], a16[:])]
	}
	if (stun.XORMappedAddress{IP: ip, Port: int(peer.Port())}).AddToAs(m, stun.AttrXORPeerAddress) != nil {
		return nil, false
	}
	m.Add(stun.AttrData, mem[off:off+n])
	m.WriteHeader()
	out := m.Raw
	m.Raw = nil
	if len(out) == 0 || &out[0] != &mem[0] {
		return nil, false // grew out of the slot (cannot happen given the check above)
	}
	return out, true
}
