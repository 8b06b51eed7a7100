package bench

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/pion/turn/v5"
)

// familyRelayGen hands out loopback relay sockets of the family pion asks
// for ("udp4" or "udp6"); pion's static generator holds a single IP.
type familyRelayGen struct{}

func (familyRelayGen) Validate() error { return nil }

func (familyRelayGen) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	host := "127.0.0.1"
	if conf.Network == "udp6" {
		host = "::1"
	}
	c, err := net.ListenPacket(conf.Network, net.JoinHostPort(host, strconv.Itoa(conf.RequestedPort)))
	if err != nil {
		return nil, nil, err
	}
	return c, c.LocalAddr(), nil
}

func (familyRelayGen) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, net.ErrClosed
}

func (familyRelayGen) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, net.ErrClosed
}

// testServer is a pion/turn server on both loopback families, used only to
// test the generator when our relay is not involved.
type testServer struct {
	v4, v6 netip.AddrPort
}

const (
	testUser  = "bench"
	testPass  = "bench-secret"
	testRealm = "bench.test"
)

func startPionServer(t *testing.T) testServer {
	t.Helper()
	srv, closeFn, err := newPionServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return srv
}

// newPionServer starts a pion/turn server with StrictAddressFamily on
// 127.0.0.1 and ::1, ephemeral ports.
func newPionServer() (testServer, func(), error) {
	l4, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return testServer{}, nil, fmt.Errorf("listen udp4: %w", err)
	}
	l6, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		_ = l4.Close()
		return testServer{}, nil, fmt.Errorf("listen udp6: %w", err)
	}
	key := turn.GenerateAuthKey(testUser, testRealm, testPass)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: testRealm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username == testUser {
				return ra.Username, key, true
			}
			return "", nil, false
		},
		StrictAddressFamily: true,
		LoggerFactory:       quietLogs,
		PacketConnConfigs: []turn.PacketConnConfig{
			{PacketConn: l4, RelayAddressGenerator: familyRelayGen{}},
			{PacketConn: l6, RelayAddressGenerator: familyRelayGen{}},
		},
	})
	if err != nil {
		_ = l4.Close()
		_ = l6.Close()
		return testServer{}, nil, fmt.Errorf("turn.NewServer: %w", err)
	}
	return testServer{
		v4: l4.LocalAddr().(*net.UDPAddr).AddrPort(),
		v6: l6.LocalAddr().(*net.UDPAddr).AddrPort(),
	}, func() { _ = srv.Close() }, nil
}
