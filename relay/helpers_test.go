package relay_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/stuntest"
	"github.com/isthmusrelay/isthmus/relay/relaytest"
)

// Credentials and realm of the relays started by these tests.
const (
	testRealm    = relaytest.Realm
	testUser     = relaytest.User
	testPassword = relaytest.Password
	testSecret   = relaytest.Secret
	// ioTimeout bounds every single wait on a socket in these tests.
	ioTimeout = stuntest.IOTimeout
	// stunMagicCookie is the fixed STUN magic cookie (RFC 8489 §5).
	stunMagicCookie = stuntest.MagicCookie
)

// The relay and the raw STUN/TURN client these tests drive (relay/relaytest,
// internal/stuntest), under the short names the tests use.
type (
	testRelay  = relaytest.Relay
	stunClient = stuntest.Client
)

var (
	testConfig = relaytest.Config
	startRelay = relaytest.Start
	dialSTUN   = stuntest.Dial

	attr                  = stuntest.Attr
	requestedTransportUDP = stuntest.RequestedTransportUDP
	requestedFamily       = stuntest.RequestedFamily
	evenPort              = stuntest.EvenPort
	reservationToken      = stuntest.ReservationToken
	channelNumber         = stuntest.ChannelNumber
	lifetime              = stuntest.Lifetime
	peerAddress           = stuntest.PeerAddress
	dataAttr              = stuntest.DataAttr
	xorAddr               = stuntest.XORAddr
	errorCode             = stuntest.ErrorCode
	describe              = stuntest.Describe
)

// ---- peers ----

// udpPeer is a UDP socket on loopback standing in for a remote peer.
type udpPeer struct {
	conn *net.UDPConn
}

// listenPeer opens a UDP peer on addr ("127.0.0.1:0" or "[::1]:0").
func listenPeer(t testing.TB, addr string) *udpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("listen peer %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &udpPeer{conn: conn}
}

func (p *udpPeer) addr() netip.AddrPort {
	ap := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readFrom waits up to ioTimeout for one datagram.
func (p *udpPeer) readFrom() ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 65536)
	if err := p.conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return nil, netip.AddrPort{}, err
	}
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

// ---- pion/turn client ----

// pionClient is pion/turn's own client with an allocation on the relay.
type pionClient struct {
	client  *turn.Client
	relayed net.PacketConn
}

// newPionClient connects pion's client from a local UDP socket of the server's
// family and allocates a relay of the requested family.
func newPionClient(t testing.TB, server netip.AddrPort, family turn.RequestedAddressFamily, username, password string) (*pionClient, error) {
	t.Helper()
	local := "127.0.0.1:0"
	if server.Addr().Is6() {
		local = "[::1]:0"
	}
	conn, err := net.ListenPacket("udp", local)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", local, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client, relayed, err := allocateOver(t, conn, server, family, username, password)
	if err != nil {
		return nil, err
	}
	return &pionClient{client: client, relayed: relayed}, nil
}

// allocateOver runs pion/turn's client over conn (a UDP socket, or a TCP or
// TLS stream wrapped in turn.NewSTUNConn) toward server, with a 200 ms RTO
// and quiet logs, and allocates a relay of the requested family. A client
// that cannot start fails the test; a refused Allocate is the error. Client
// and allocation are closed when t ends.
func allocateOver(t testing.TB, conn net.PacketConn, server netip.AddrPort, family turn.RequestedAddressFamily, username, password string) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr:         server.String(),
		TURNServerAddr:         server.String(),
		Username:               username,
		Password:               password,
		Conn:                   conn,
		RequestedAddressFamily: family,
		RTO:                    200 * time.Millisecond,
		LoggerFactory:          quietLoggerFactory(),
	})
	if err != nil {
		t.Fatalf("turn.NewClient: %v", err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatalf("client Listen: %v", err)
	}
	relayed, err := client.Allocate()
	if err != nil {
		return client, nil, fmt.Errorf("Allocate (family %v) via %s: %w", family, server, err)
	}
	t.Cleanup(func() { _ = relayed.Close() })
	return client, relayed, nil
}

func (c *pionClient) relayedAddr() netip.AddrPort {
	ap := c.relayed.LocalAddr().(*net.UDPAddr).AddrPort()
	return ap
}

// ---- process-wide resource counts ----

// countFDs counts this process's open file descriptors.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	end := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quietLoggerFactory keeps pion's client logs out of the test output.
func quietLoggerFactory() logging.LoggerFactory {
	return &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled}
}
