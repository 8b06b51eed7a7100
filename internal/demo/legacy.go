package demo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
)

// The legacy endpoint is the installed base of RFC 6157 §4: a
// phone that knows nothing of ICE or TURN. It writes and reads the plainest
// SDP (one c= line, one m=audio line, PCMU) with pion/sdp directly: it must
// not depend on our SDK's SDP code, which is what it tests.

// ErrNoMediaAddress is returned when a remote SDP has no usable audio
// address for a plain RTP endpoint.
var ErrNoMediaAddress = errors.New("no usable audio address in SDP")

// legacySDP builds a plain offer or answer for a local RTP address.
func legacySDP(local netip.AddrPort, sessionID uint64) ([]byte, error) {
	netType, addrType := "IN", "IP4"
	if local.Addr().Is6() {
		addrType = "IP6"
	}
	d := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: "-", SessionID: sessionID, SessionVersion: 1,
			NetworkType: netType, AddressType: addrType, UnicastAddress: local.Addr().String(),
		},
		SessionName: "legacy phone",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: netType, AddressType: addrType,
			Address: &sdp.Address{Address: local.Addr().String()},
		},
		TimeDescriptions: []sdp.TimeDescription{{}},
		MediaDescriptions: []*sdp.MediaDescription{{
			MediaName: sdp.MediaName{
				Media:   "audio",
				Port:    sdp.RangedPort{Value: int(local.Port())},
				Protos:  []string{"RTP", "AVP"},
				Formats: []string{"0"},
			},
			Attributes: []sdp.Attribute{
				sdp.NewAttribute("rtpmap", "0 PCMU/8000"),
				sdp.NewAttribute("ptime", "20"),
				sdp.NewPropertyAttribute("sendrecv"),
			},
		}},
	}
	b, err := d.Marshal()
	if err != nil {
		return nil, fmt.Errorf("demo: legacy sdp: %w", err)
	}
	return b, nil
}

// legacyRemote returns where a plain endpoint sends media: the first audio
// m-line's port at its c= address (media level, else session level).
func legacyRemote(b []byte) (netip.AddrPort, error) {
	var d sdp.SessionDescription
	if err := d.Unmarshal(b); err != nil {
		return netip.AddrPort{}, fmt.Errorf("demo: legacy: remote sdp: %w", err)
	}
	for i, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		c := m.ConnectionInformation
		if c == nil {
			c = d.ConnectionInformation
		}
		if c == nil || c.Address == nil {
			return netip.AddrPort{}, fmt.Errorf("demo: legacy: remote sdp: m-line %d: %w: no c= line", i, ErrNoMediaAddress)
		}
		a, err := netip.ParseAddr(c.Address.Address)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("demo: legacy: remote sdp: m-line %d: c=%s: %w: %v", i, c.Address.Address, ErrNoMediaAddress, err)
		}
		if (c.AddressType == "IP4") != a.Is4() {
			return netip.AddrPort{}, fmt.Errorf("demo: legacy: remote sdp: m-line %d: c=%s %s: %w: address does not match network type", i, c.AddressType, a, ErrNoMediaAddress)
		}
		return netip.AddrPortFrom(a, uint16(m.MediaName.Port.Value)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("demo: legacy: remote sdp: %w: no audio m-line with a port", ErrNoMediaAddress)
}

// plainConn is a legacy endpoint's RTP socket once the remote address is
// known: it sends there and accepts only datagrams from there, counting the
// others (a real phone would too, or be open to RTP injection).
type plainConn struct {
	udp    *net.UDPConn
	remote netip.AddrPort
	stray  atomic.Uint64
}

// Strangers returns how many datagrams came from another address than the
// remote's and were dropped.
func (c *plainConn) Strangers() uint64 { return c.stray.Load() }

func (c *plainConn) Write(p []byte) (int, error) {
	return c.udp.WriteToUDPAddrPort(p, c.remote)
}

func (c *plainConn) Read(p []byte) (int, error) {
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(p)
		if err != nil {
			return 0, err
		}
		if from.Addr().Unmap() == c.remote.Addr() && from.Port() == c.remote.Port() {
			return n, nil
		}
		c.stray.Add(1)
	}
}

func (c *plainConn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

func (c *plainConn) Close() error { return c.udp.Close() }
