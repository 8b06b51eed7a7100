package gather

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// Mode is how a media path was set up: PathInfo.Mode.
type Mode string

// Path modes reported by PathInfo.Mode.
const (
	// ModeICE: ICE selected a candidate pair.
	ModeICE Mode = "ice"
	// ModeLegacyRelay: the peer does not do ICE; media flows through our
	// TURN allocation to the peer's c=/m= address.
	ModeLegacyRelay Mode = "legacy-relay"
	// ModeLegacyDirect: the peer does not do ICE and we had no relayed
	// candidate of its family; media flows from a host (or reflexive)
	// socket straight to its c=/m= address.
	ModeLegacyDirect Mode = "legacy-direct"
)

// PathInfo describes the media path a MediaConn uses.
type PathInfo struct {
	// Mode is ModeICE, ModeLegacyRelay or ModeLegacyDirect.
	Mode Mode
	// LocalType and RemoteType are ICE candidate types ("host", "srflx",
	// "prflx", "relay"); RemoteType is "legacy" for a non-ICE peer.
	LocalType, RemoteType string
	// LocalFamily and RemoteFamily are the families of Local and Remote.
	LocalFamily, RemoteFamily netaddr.Family
	// Local is our candidate's transport address (the relayed address for
	// a relayed candidate); Remote is the peer's.
	Local, Remote netip.AddrPort
	// RelayProtocol is the transport to the TURN server ("udp", "tcp",
	// "tls") when Local is relayed.
	RelayProtocol string
}

// String renders the path, e.g. "ice relay/IPv4 -> host/IPv4".
func (p PathInfo) String() string {
	return fmt.Sprintf("%s %s/%s -> %s/%s", p.Mode, p.LocalType, p.LocalFamily, p.RemoteType, p.RemoteFamily)
}

// MediaConn is the connected media path: a datagram conn that carries RTP
// (and multiplexed RTCP) to the peer, over the ICE-selected pair or, for a
// legacy peer, from our allocation or socket to its c=/m= address. Read
// returns whole packets from the peer; Write sends one packet.
type MediaConn struct {
	agent   *Agent
	iceConn *ice.Conn

	legacy  *localCandidate
	peer    netip.AddrPort
	peerUDP *net.UDPAddr
	mode    Mode

	closeOnce sync.Once
	closeErr  error
	// lost is set once consent freshness failed (RFC 7675): Read and
	// Write fail with ErrConsentLost from then on.
	lost atomic.Bool
	// strangers counts datagrams a legacy path dropped because they came
	// from another address than the peer's.
	strangers atomic.Uint64
}

// errConsentLost is what Read and Write return once consent is lost.
var errConsentLost = fmt.Errorf("gather: media: %w", ErrConsentLost)

// loseConsent makes Read and Write fail with ErrConsentLost and wakes a
// Read blocked in pion/ice's buffer (which stays open after a failure).
func (c *MediaConn) loseConsent() {
	if c.iceConn == nil || c.lost.Swap(true) {
		return
	}
	_ = c.iceConn.SetReadDeadline(time.Now())
}

// regainConsent undoes loseConsent after an ICE restart.
func (c *MediaConn) regainConsent() {
	if c.iceConn != nil && c.lost.Swap(false) {
		_ = c.iceConn.SetReadDeadline(time.Time{})
	}
}

// Read reads one packet from the peer. Once consent is lost (no answer
// from the peer within Config.ConsentTimeout) it returns an error wrapping
// ErrConsentLost; after Close, one wrapping net.ErrClosed or ice.ErrClosed.
func (c *MediaConn) Read(p []byte) (int, error) {
	if c.iceConn != nil {
		if c.lost.Load() {
			return 0, errConsentLost
		}
		n, err := c.iceConn.Read(p)
		if err != nil && c.lost.Load() {
			return 0, errConsentLost
		}
		return n, err
	}
	for {
		n, from, err := c.legacy.conn.ReadFrom(p)
		if err != nil {
			return 0, err
		}
		if unmapAP(addrPortOf(from)) != c.peer {
			c.strangers.Add(1)
			continue
		}
		return n, nil
	}
}

// Write sends one packet to the peer; once consent is lost it returns an
// error wrapping ErrConsentLost (RFC 7675 §5.1: no more media).
func (c *MediaConn) Write(p []byte) (int, error) {
	if c.iceConn != nil {
		if c.lost.Load() {
			return 0, errConsentLost
		}
		return c.iceConn.Write(p)
	}
	return c.legacy.conn.WriteTo(p, c.peerUDP)
}

// ReadRTP reads one packet into buf and parses it as RTP.
func (c *MediaConn) ReadRTP(buf []byte) (*rtp.Packet, error) {
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(buf[:n]); err != nil {
		return nil, fmt.Errorf("gather: rtp: %w", err)
	}
	return pkt, nil
}

// WriteRTP marshals pkt and sends it.
func (c *MediaConn) WriteRTP(pkt *rtp.Packet) error {
	b, err := pkt.Marshal()
	if err != nil {
		return fmt.Errorf("gather: rtp: %w", err)
	}
	_, err = c.Write(b)
	return err
}

// Strangers returns how many datagrams a legacy path dropped because they
// did not come from the peer's address (always 0 on an ICE path, where
// pion/ice does that filtering).
func (c *MediaConn) Strangers() uint64 { return c.strangers.Load() }

// Selected reports the path in use. For ICE it is the currently selected
// pair (it may change after a renomination).
func (c *MediaConn) Selected() PathInfo {
	if c.iceConn == nil {
		return PathInfo{
			Mode: c.mode, LocalType: c.legacy.typ.String(), RemoteType: "legacy",
			LocalFamily: c.legacy.family, RemoteFamily: netaddr.FamilyOf(c.peer.Addr()),
			Local: c.legacy.addr, Remote: c.peer, RelayProtocol: c.legacy.relayProto,
		}
	}
	pair, err := c.agent.ice.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return PathInfo{Mode: ModeICE}
	}
	info := PathInfo{
		Mode:       ModeICE,
		LocalType:  pair.Local.Type().String(),
		RemoteType: pair.Remote.Type().String(),
		Local:      candAddr(pair.Local),
		Remote:     candAddr(pair.Remote),
	}
	info.LocalFamily = netaddr.FamilyOf(info.Local.Addr())
	info.RemoteFamily = netaddr.FamilyOf(info.Remote.Addr())
	if r, ok := pair.Local.(*ice.CandidateRelay); ok {
		info.RelayProtocol = r.RelayProtocol()
	}
	return info
}

func candAddr(c ice.Candidate) netip.AddrPort {
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(c.Port())) //nolint:gosec // candidate ports are 16-bit
}

// LocalAddr returns our address on the path (see PathInfo.Local).
func (c *MediaConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(c.Selected().Local)
}

// RemoteAddr returns the peer's address on the path.
func (c *MediaConn) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(c.Selected().Remote)
}

// SetDeadline sets the read and write deadlines.
func (c *MediaConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// SetReadDeadline bounds Read.
func (c *MediaConn) SetReadDeadline(t time.Time) error {
	if c.iceConn != nil {
		if c.lost.Load() {
			return nil // keep the wake-up loseConsent set
		}
		return c.iceConn.SetReadDeadline(t)
	}
	return c.legacy.conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds Write.
func (c *MediaConn) SetWriteDeadline(t time.Time) error {
	if c.iceConn != nil {
		return c.iceConn.SetWriteDeadline(t)
	}
	return c.legacy.conn.SetWriteDeadline(t)
}

// Close ends the media path and closes the Agent (an Agent carries one
// call).
func (c *MediaConn) Close() error {
	return c.agent.Close()
}

// closeLegacy releases the legacy path's socket or allocation.
func (c *MediaConn) closeLegacy() error {
	c.closeOnce.Do(func() {
		if c.legacy != nil {
			c.closeErr = c.legacy.release()
		}
	})
	return c.closeErr
}

var _ net.Conn = (*MediaConn)(nil)
