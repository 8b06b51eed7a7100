package dataplane

// RFC 8656 §14 (IP header fields for UDP-to-UDP translation): the preferred
// behaviour for the DiffServ Codepoint and ECN is to set the outgoing value
// to the incoming one, so that a voice client's EF marking (DSCP 46)
// survives the relay; for the TTL / hop limit the default behaviour is the
// system default. The listener sockets report each client datagram's
// TOS / Traffic Class (IP_RECVTOS, IPV6_RECVTCLASS) and the worker puts it
// on the datagram to the peer: written into the raw header, or set on the
// allocation's own socket when it changes (one setsockopt per change, in
// practice once per call, never per datagram).

// ecnMask is the ECN field of the TOS / Traffic Class octet (RFC 3168 §5).
const ecnMask = 0x03

// markFor returns the TOS / Traffic Class octet for the datagram to the
// peer of client datagram m: the client's own, or with Config.ForceDSCP the
// configured DSCP and the client's ECN bits (RFC 8656 §14 copies ECN
// whatever the DSCP policy).
func (p *Plane) markFor(m *Message) uint8 {
	if p.cfg.ForceDSCP {
		return p.cfg.DSCP<<2 | m.TOS&ecnMask
	}
	return m.TOS
}
