package gather

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// rafConn is the seam between pion/turn's client and its socket. pion/turn
// v5 only ever writes REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.1.1) when the
// family is IPv6; asking for an IPv4 relay therefore depends on the server
// defaulting to IPv4, and coturn instead hands an IPv6 relay to an IPv6
// client that omits the attribute. rafConn rewrites every outgoing Allocate
// request that lacks the attribute (and carries no RESERVATION-TOKEN, which
// excludes it): it re-encodes the message with pion/stun, inserts the
// attribute before MESSAGE-INTEGRITY, recomputes the long-term integrity
// from the request's own USERNAME and REALM and our password, and re-adds
// FINGERPRINT. The transaction ID is kept, so the client matches the answer.
//
// On the way in it remembers the XOR-MAPPED-ADDRESS of an Allocate success
// response, which is the allocation's server-reflexive address: the related
// address of the relayed candidate (RFC 8839 §5.1).
type rafConn struct {
	net.PacketConn
	family   netaddr.Family
	username string
	password string

	rewritten atomic.Uint64 // Allocate requests the attribute was added to
	failed    atomic.Uint64 // Allocate requests we could not rewrite (sent as they were)

	mu     sync.Mutex
	mapped netip.AddrPort
}

func newRAFConn(c net.PacketConn, family netaddr.Family, username, password string) *rafConn {
	return &rafConn{PacketConn: c, family: family, username: username, password: password}
}

// WriteTo adds REQUESTED-ADDRESS-FAMILY to Allocate requests, then sends.
func (c *rafConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if out, ok := c.rewrite(p); ok {
		if _, err := c.PacketConn.WriteTo(out, addr); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// ReadFrom passes packets through, noting the mapped address of an
// Allocate success response.
func (c *rafConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil && n >= 20 && stun.IsMessage(p[:n]) {
		c.noteMapped(p[:n])
	}
	return n, addr, err
}

func (c *rafConn) noteMapped(b []byte) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type != (stun.MessageType{Method: stun.MethodAllocate, Class: stun.ClassSuccessResponse}) {
		return
	}
	var xma stun.XORMappedAddress
	if xma.GetFrom(m) != nil {
		return
	}
	a, ok := netip.AddrFromSlice(xma.IP)
	if !ok {
		return
	}
	c.mu.Lock()
	c.mapped = netip.AddrPortFrom(a.Unmap(), uint16(xma.Port)) //nolint:gosec // a STUN port fits 16 bits
	c.mu.Unlock()
}

// Mapped returns the server-reflexive address the TURN server saw, when an
// Allocate success response carried one.
func (c *rafConn) Mapped() (netip.AddrPort, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mapped, c.mapped.IsValid()
}

func (c *rafConn) rafValue() turn.RequestedAddressFamily {
	if c.family == netaddr.IPv6 {
		return turn.RequestedAddressFamilyIPv6
	}
	return turn.RequestedAddressFamilyIPv4
}

// rewrite returns the Allocate request p with REQUESTED-ADDRESS-FAMILY
// added, or ok=false when p must be sent unchanged.
func (c *rafConn) rewrite(p []byte) ([]byte, bool) {
	if len(p) < 20 || !stun.IsMessage(p) {
		return nil, false
	}
	in := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := in.Decode(); err != nil {
		return nil, false
	}
	if in.Type != (stun.MessageType{Method: stun.MethodAllocate, Class: stun.ClassRequest}) {
		return nil, false
	}
	if in.Contains(stun.AttrRequestedAddressFamily) || in.Contains(stun.AttrReservationToken) {
		return nil, false
	}
	out := stun.New()
	out.Type = in.Type
	out.TransactionID = in.TransactionID
	out.WriteHeader()
	hadIntegrity, hadFingerprint := false, false
	for _, a := range in.Attributes {
		switch a.Type {
		case stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256:
			hadIntegrity = true
			continue
		case stun.AttrFingerprint:
			hadFingerprint = true
			continue
		}
		out.Add(a.Type, a.Value)
	}
	if err := c.rafValue().AddTo(out); err != nil {
		c.failed.Add(1)
		return nil, false
	}
	if hadIntegrity {
		var realm stun.Realm
		if err := realm.GetFrom(in); err != nil {
			c.failed.Add(1)
			return nil, false
		}
		integrity := stun.NewLongTermIntegrity(c.username, realm.String(), c.password)
		if err := integrity.AddTo(out); err != nil {
			c.failed.Add(1)
			return nil, false
		}
	}
	if hadFingerprint {
		if err := stun.Fingerprint.AddTo(out); err != nil {
			c.failed.Add(1)
			return nil, false
		}
	}
	c.rewritten.Add(1)
	return out.Raw, true
}
