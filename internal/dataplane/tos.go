package dataplane

import "github.com/isthmusrelay/isthmus/internal/udpbatch"

// RFC 8656 §14 (IP header fields for UDP-to-UDP translation): the preferred
// behaviour for the DiffServ Codepoint and ECN is to set the outgoing value
// to the incoming one, so that a voice client's EF marking (DSCP 46)
// survives the relay; for the TTL / hop limit the default behaviour is the
// system default. Every adopted socket reports each datagram's TOS /
// Traffic Class (IP_RECVTOS, IPV6_RECVTCLASS). Client to peer, the worker
// puts it on the datagram to the peer: written into the raw header, or set
// on the allocation's own socket when it changes (one setsockopt per
// change, in practice once per call, never per datagram). Peer to client,
// one listener socket sends to many clients, so each marked datagram of the
// sendmmsg carries its own IP_TOS / IPV6_TCLASS control message.

// ecnMask is the ECN field of the TOS / Traffic Class octet (RFC 3168 §5).
const ecnMask = 0x03

// markFor returns the TOS / Traffic Class octet for relaying datagram m
// (from a client or a peer): its own, or with Config.ForceDSCP the
// configured DSCP and m's ECN bits (RFC 8656 §14 copies ECN whatever the
// DSCP policy).
func (p *Plane) markFor(m *udpbatch.Message) uint8 {
	if p.cfg.ForceDSCP {
		return p.cfg.DSCP<<2 | m.TOS&ecnMask
	}
	return m.TOS
}

// setMark makes c's socket send with TOS / Traffic Class tos from now on,
// when that is not already its marking. The kernel default is 0, which
// Conn.tos starts at.
func (c *Conn) setMark(tos uint8) {
	if c.fd < 0 || uint32(tos) == c.tos.Load() {
		return
	}
	c.tos.Store(uint32(tos))
	udpbatch.SetTOS(c.fd, c.v6, tos)
}
