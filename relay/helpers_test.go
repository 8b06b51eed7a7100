package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/relay"
)

// Credentials and realm of the relays started by these tests.
const (
	testRealm    = "isthmus.test"
	testUser     = "alice"
	testPassword = "alice-pass"
	testSecret   = "rest-secret-1"
	// ioTimeout bounds every single wait on a socket in these tests.
	ioTimeout = 3 * time.Second
	// stunMagicCookie is the fixed STUN magic cookie (RFC 8489 §5); pion/stun does not export it.
	stunMagicCookie = 0x2112A442
)

// testRelay is one in-process relay with the addresses it actually bound.
type testRelay struct {
	srv       *relay.Server
	closeOnce sync.Once
	reg       *prometheus.Registry
	logs      *lockedBuffer
	// UDP and TCP listen on the same address and port.
	v4, v6 netip.AddrPort
}

// lockedBuffer collects the relay's log lines; they are printed only when a test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// failLogLines is how much of the relay's log a failing test prints.
const failLogLines = 60

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testConfig is the configuration every test starts from: loopback only, ephemeral
// listen ports, a relay IP per family, one static user and one REST secret.
func testConfig() relay.Config {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	cfg.RelayIPs = []string{"127.0.0.1", "::1"}
	cfg.Realm = testRealm
	cfg.Users = []string{testUser + ":" + testPassword}
	cfg.AuthSecrets = []string{testSecret}
	cfg.AllowLoopbackPeers = true
	cfg.Metrics = ""
	cfg.LogLevel = "debug"
	return cfg
}

// startRelay starts a relay with testConfig, changed by mutate when not nil, and
// closes it when the test ends.
func startRelay(t testing.TB, mutate func(*relay.Config)) *testRelay {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := relay.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		t.Fatalf("relay.New(%+v): %v", cfg, err)
	}
	tr := &testRelay{srv: srv, reg: reg, logs: logs}
	t.Cleanup(func() {
		tr.close(t)
		switch {
		case os.Getenv("ISTHMUS_TEST_RELAY_LOG") != "":
			t.Logf("relay log:\n%s", logs.String())
		case t.Failed():
			t.Logf("relay log (last %d lines; ISTHMUS_TEST_RELAY_LOG=1 prints all):\n%s", failLogLines, lastLines(logs.String(), failLogLines))
		}
	})
	for _, ap := range srv.ListenAddrs() {
		switch {
		case ap.Addr().Unmap().Is4() && !tr.v4.IsValid():
			tr.v4 = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		case ap.Addr().Is6() && !ap.Addr().Is4In6() && !tr.v6.IsValid():
			tr.v6 = ap
		}
	}
	if !tr.v4.IsValid() || !tr.v6.IsValid() {
		t.Fatalf("relay ListenAddrs() = %v, want one IPv4 and one IPv6 address", srv.ListenAddrs())
	}
	return tr
}

// close closes the relay once; later calls do nothing.
func (r *testRelay) close(t testing.TB) {
	r.closeOnce.Do(func() {
		if err := r.srv.Close(); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	})
}

// addr returns the relay's listen address of the given family ("4" or "6").
func (r *testRelay) addr(family string) netip.AddrPort {
	if family == "6" {
		return r.v6
	}
	return r.v4
}

// metricSum adds up every counter and gauge sample whose metric family name
// contains all of the substrings and whose labels contain all of labelHas
// (as name=value strings). found is false when no family name matched.
func (r *testRelay) metricSum(t testing.TB, nameHas []string, labelHas ...string) (sum float64, found bool) {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
families:
	for _, mf := range mfs {
		for _, s := range nameHas {
			if !strings.Contains(mf.GetName(), s) {
				continue families
			}
		}
		found = true
	samples:
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			for _, want := range labelHas {
				if !containsString(labels, want) {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum, found
}

// waitMetric waits up to ioTimeout for the metric sum (see metricSum) to
// satisfy ok: the relay may count a datagram just after forwarding it.
func (r *testRelay) waitMetric(t testing.TB, ok func(float64) bool, nameHas []string, labelHas ...string) (float64, bool) {
	t.Helper()
	var sum float64
	var found bool
	waitUntil(ioTimeout, func() bool {
		sum, found = r.metricSum(t, nameHas, labelHas...)
		return found && ok(sum)
	})
	return sum, found && ok(sum)
}

// metricNames lists every metric family name the relay registered (for failure messages).
func (r *testRelay) metricNames(t testing.TB) []string {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	names := make([]string, 0, len(mfs))
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ---- raw STUN/TURN requests (pion/stun/v4) ----

// attr is a TURN attribute pion/stun has no typed setter for; the value layout is
// given at each constructor with the RFC section.
func attr(typ stun.AttrType, value ...byte) stun.Setter {
	return stun.RawAttribute{Type: typ, Value: value}
}

// requestedTransportUDP is REQUESTED-TRANSPORT=17 (RFC 8656 §18.11).
func requestedTransportUDP() stun.Setter { return attr(stun.AttrRequestedTransport, 17, 0, 0, 0) }

// requestedFamily is REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.12): 0x01 IPv4, 0x02 IPv6.
func requestedFamily(f byte) stun.Setter { return attr(stun.AttrRequestedAddressFamily, f, 0, 0, 0) }

// evenPort is EVEN-PORT (RFC 8656 §18.8) with the R bit ("reserve the next port") set or not.
func evenPort(reserve bool) stun.Setter {
	if reserve {
		return attr(stun.AttrEvenPort, 0x80)
	}
	return attr(stun.AttrEvenPort, 0x00)
}

// reservationToken is RESERVATION-TOKEN (RFC 8656 §18.9), 8 bytes.
func reservationToken(tok []byte) stun.Setter { return attr(stun.AttrReservationToken, tok...) }

// channelNumber is CHANNEL-NUMBER (RFC 8656 §18.1): 16-bit number and RFFU.
func channelNumber(n uint16) stun.Setter {
	return attr(stun.AttrChannelNumber, byte(n>>8), byte(n), 0, 0)
}

// lifetime is LIFETIME (RFC 8656 §18.2) in seconds.
func lifetime(sec uint32) stun.Setter {
	return attr(stun.AttrLifetime, byte(sec>>24), byte(sec>>16), byte(sec>>8), byte(sec))
}

// setterFunc adapts a function to stun.Setter.
type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

// peerAddress is XOR-PEER-ADDRESS (RFC 8656 §18.3) with the address family taken
// from ap as written: an IPv4-mapped IPv6 address such as ::ffff:127.0.0.1 is sent
// as family 0x02 with 16 bytes. pion's XORMappedAddress.AddToAs always rewrites a
// mapped address to family 0x01, which is exactly the normalisation an attacker
// skips, so the XOR (RFC 8489 §14.2) is applied here.
func peerAddress(ap netip.AddrPort) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		family, ip := byte(0x02), ap.Addr().AsSlice()
		if ap.Addr().Is4() {
			family = 0x01
		}
		var key [16]byte
		binary.BigEndian.PutUint32(key[0:4], stunMagicCookie)
		copy(key[4:], m.TransactionID[:])
		v := make([]byte, 4+len(ip))
		v[1] = family
		binary.BigEndian.PutUint16(v[2:4], ap.Port()^uint16(stunMagicCookie>>16))
		for i := range ip {
			v[4+i] = ip[i] ^ key[i]
		}
		m.Add(stun.AttrXORPeerAddress, v)
		return nil
	})
}

// dataAttr is DATA (RFC 8656 §18.4).
func dataAttr(b []byte) stun.Setter { return attr(stun.AttrData, b...) }

// xorAddr reads an XOR-*-ADDRESS attribute of type typ from m.
func xorAddr(m *stun.Message, typ stun.AttrType) (netip.AddrPort, error) {
	var xa stun.XORMappedAddress
	if err := xa.GetFromAs(m, typ); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%v in %v: %w", typ, m, err)
	}
	// The slice length is the family on the wire (4 or 16 bytes): keep it, do not Unmap.
	a, ok := netip.AddrFromSlice(xa.IP)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%v in %v: bad IP %v", typ, m, xa.IP)
	}
	return netip.AddrPortFrom(a, uint16(xa.Port)), nil
}

// errorCode returns the ERROR-CODE of m, or 0 for a success response.
func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return int(ec.Code)
}

// describe is a one-line summary of a response for failure messages.
func describe(m *stun.Message) string {
	if m == nil {
		return "<no response>"
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err == nil {
		return fmt.Sprintf("%v %d %q", m.Type, ec.Code, ec.Reason)
	}
	return m.String()
}

// stunClient speaks STUN/TURN to the relay over one UDP or TCP connection and
// performs the long-term credential dance (RFC 8489 §9.2) for every request.
type stunClient struct {
	t        testing.TB
	conn     net.Conn
	pc       net.PacketConn // TCP framing through pion's STUNConn when stream
	server   net.Addr
	username string
	password string
	realm    string
	nonce    []byte
}

// dialSTUN connects to the relay address over network ("udp" or "tcp") with the given credentials.
func dialSTUN(t testing.TB, network string, server netip.AddrPort, username, password string) *stunClient {
	t.Helper()
	conn, err := net.DialTimeout(network, server.String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, server, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &stunClient{t: t, conn: conn, username: username, password: password, server: conn.RemoteAddr()}
	if network == "tcp" {
		c.pc = turn.NewSTUNConn(conn)
	}
	return c
}

// localAddr is the client's own transport address.
func (c *stunClient) localAddr() netip.AddrPort {
	return netip.MustParseAddrPort(c.conn.LocalAddr().String())
}

func (c *stunClient) write(b []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(b)
	return err
}

// read returns the next datagram or framed STUN/ChannelData message before the deadline.
func (c *stunClient) read(deadline time.Time) ([]byte, error) {
	buf := make([]byte, 65536)
	if c.pc != nil {
		if err := c.pc.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, _, err := c.pc.ReadFrom(buf)
		return buf[:n], err
	}
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	n, err := c.conn.Read(buf)
	return buf[:n], err
}

// roundTrip sends m and returns the response with the same transaction ID,
// retransmitting over UDP (RFC 8489 §6.2.1) within ioTimeout.
func (c *stunClient) roundTrip(m *stun.Message) (*stun.Message, error) {
	end := time.Now().Add(ioTimeout)
	rto := 250 * time.Millisecond
	for time.Now().Before(end) {
		if err := c.write(m.Raw); err != nil {
			return nil, fmt.Errorf("write %v: %w", m.Type, err)
		}
		wait := time.Now().Add(rto)
		if c.pc != nil || wait.After(end) {
			wait = end
		}
		for {
			b, err := c.read(wait)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read response to %v: %w", m.Type, err)
			}
			if !stun.IsMessage(b) {
				continue // ChannelData or junk; not our answer
			}
			res := &stun.Message{Raw: append([]byte(nil), b...)}
			if err := res.Decode(); err != nil {
				return nil, fmt.Errorf("decode response to %v: %w", m.Type, err)
			}
			if res.TransactionID == m.TransactionID {
				return res, nil
			}
		}
		rto *= 2
	}
	return nil, fmt.Errorf("no response to %v within %v", m.Type, ioTimeout)
}

// request sends a request of method with attrs. If the relay challenges it (401
// or 438 stale nonce) the request is repeated once with USERNAME, REALM, NONCE and
// MESSAGE-INTEGRITY. It returns the final response.
func (c *stunClient) request(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	res, err := c.tryRequest(method, attrs...)
	if err != nil {
		c.t.Fatalf("%v request: %v", method, err)
	}
	return res
}

func (c *stunClient) tryRequest(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for attempt := 0; attempt < 3; attempt++ {
		m, err := c.build(method, attrs...)
		if err != nil {
			return nil, err
		}
		res, err := c.roundTrip(m)
		if err != nil {
			return nil, err
		}
		code := errorCode(res)
		if code != int(stun.CodeUnauthorized) && code != int(stun.CodeStaleNonce) {
			return res, nil
		}
		if c.username == "" || attempt > 0 && code == int(stun.CodeUnauthorized) {
			return res, nil
		}
		var realm stun.Realm
		var nonce stun.Nonce
		if realm.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
			// Not a challenge one can answer (RFC 8489 §9.2.4 wants REALM and
			// NONCE); hand it to the test, which names what it wanted instead.
			return res, nil
		}
		c.realm, c.nonce = realm.String(), append([]byte(nil), nonce...)
	}
	return nil, fmt.Errorf("%v: still challenged after 3 attempts", method)
}

// build makes a request message, authenticated when a nonce is known.
func (c *stunClient) build(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	if c.nonce != nil && c.username != "" {
		setters = append(setters,
			stun.NewUsername(c.username),
			stun.NewRealm(c.realm),
			stun.NewNonce(string(c.nonce)),
			stun.NewLongTermIntegrity(c.username, c.realm, c.password),
		)
	}
	setters = append(setters, stun.Fingerprint)
	return stun.Build(setters...)
}

// indication sends an unauthenticated indication (Send) with attrs.
func (c *stunClient) indication(method stun.Method, attrs ...stun.Setter) {
	c.t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassIndication)}, attrs...)
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		c.t.Fatalf("build %v indication: %v", method, err)
	}
	if err := c.write(m.Raw); err != nil {
		c.t.Fatalf("send %v indication: %v", method, err)
	}
}

// allocate performs an authenticated UDP Allocate with extra attributes and
// returns the final response (success or error).
func (c *stunClient) allocate(extra ...stun.Setter) *stun.Message {
	c.t.Helper()
	return c.request(stun.MethodAllocate, append([]stun.Setter{requestedTransportUDP()}, extra...)...)
}

// mustAllocate allocates and returns the XOR-RELAYED-ADDRESS, failing the test on an error response.
func (c *stunClient) mustAllocate(extra ...stun.Setter) (netip.AddrPort, *stun.Message) {
	c.t.Helper()
	res := c.allocate(extra...)
	if res.Type != stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse) {
		c.t.Fatalf("Allocate from %s: got %s, want success", c.localAddr(), describe(res))
	}
	relayed, err := xorAddr(res, stun.AttrXORRelayedAddress)
	if err != nil {
		c.t.Fatalf("Allocate: %v", err)
	}
	return relayed, res
}

// release deletes the allocation (Refresh with LIFETIME 0, RFC 8656 §7).
func (c *stunClient) release() {
	c.t.Helper()
	res := c.request(stun.MethodRefresh, lifetime(0))
	if res.Type.Class != stun.ClassSuccessResponse {
		c.t.Errorf("Refresh lifetime 0: got %s, want success", describe(res))
	}
}

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
