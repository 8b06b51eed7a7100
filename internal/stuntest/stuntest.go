// Package stuntest is a raw STUN/TURN client for tests: hand-built
// messages (pion/stun/v4 does the encoding) for what pion/turn's client
// cannot express (EVEN-PORT, RESERVATION-TOKEN, a mapped XOR-PEER-ADDRESS,
// no REQUESTED-ADDRESS-FAMILY, malformed input), with the long-term
// credential dance (RFC 8489 §9.2) and UDP retransmission (RFC 8489
// §6.2.1). It does not import the relay, so the relay's own package tests
// use it as well as relay/relaytest.
package stuntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

const (
	// IOTimeout bounds every single wait on a socket.
	IOTimeout = 3 * time.Second
	// MagicCookie is the fixed STUN magic cookie (RFC 8489 §5); pion/stun
	// does not export it.
	MagicCookie = 0x2112A442
)

// Attr is a TURN attribute pion/stun has no typed setter for; the value layout is
// given at each constructor with the RFC section.
func Attr(typ stun.AttrType, value ...byte) stun.Setter {
	return stun.RawAttribute{Type: typ, Value: value}
}

// RequestedTransportUDP is REQUESTED-TRANSPORT=17 (RFC 8656 §18.11).
func RequestedTransportUDP() stun.Setter { return Attr(stun.AttrRequestedTransport, 17, 0, 0, 0) }

// RequestedFamily is REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.12): 0x01 IPv4, 0x02 IPv6.
func RequestedFamily(f byte) stun.Setter { return Attr(stun.AttrRequestedAddressFamily, f, 0, 0, 0) }

// EvenPort is EVEN-PORT (RFC 8656 §18.8) with the R bit ("reserve the next port") set or not.
func EvenPort(reserve bool) stun.Setter {
	if reserve {
		return Attr(stun.AttrEvenPort, 0x80)
	}
	return Attr(stun.AttrEvenPort, 0x00)
}

// ReservationToken is RESERVATION-TOKEN (RFC 8656 §18.9), 8 bytes.
func ReservationToken(tok []byte) stun.Setter { return Attr(stun.AttrReservationToken, tok...) }

// ChannelNumber is CHANNEL-NUMBER (RFC 8656 §18.1): 16-bit number and RFFU.
func ChannelNumber(n uint16) stun.Setter {
	return Attr(stun.AttrChannelNumber, byte(n>>8), byte(n), 0, 0)
}

// Lifetime is LIFETIME (RFC 8656 §18.2) in seconds.
func Lifetime(sec uint32) stun.Setter {
	return Attr(stun.AttrLifetime, byte(sec>>24), byte(sec>>16), byte(sec>>8), byte(sec))
}

// SetterFunc adapts a function to stun.Setter.
type SetterFunc func(m *stun.Message) error

func (f SetterFunc) AddTo(m *stun.Message) error { return f(m) }

// PeerAddress is XOR-PEER-ADDRESS (RFC 8656 §18.3) with the address family taken
// from ap as written: an IPv4-mapped IPv6 address such as ::ffff:127.0.0.1 is sent
// as family 0x02 with 16 bytes. pion's XORMappedAddress.AddToAs always rewrites a
// mapped address to family 0x01, which is exactly the normalisation an attacker
// skips, so the XOR (RFC 8489 §14.2) is applied here.
func PeerAddress(ap netip.AddrPort) stun.Setter {
	return SetterFunc(func(m *stun.Message) error {
		family, ip := byte(0x02), ap.Addr().AsSlice()
		if ap.Addr().Is4() {
			family = 0x01
		}
		var key [16]byte
		binary.BigEndian.PutUint32(key[0:4], MagicCookie)
		copy(key[4:], m.TransactionID[:])
		v := make([]byte, 4+len(ip))
		v[1] = family
		binary.BigEndian.PutUint16(v[2:4], ap.Port()^uint16(MagicCookie>>16))
		for i := range ip {
			v[4+i] = ip[i] ^ key[i]
		}
		m.Add(stun.AttrXORPeerAddress, v)
		return nil
	})
}

// DataAttr is DATA (RFC 8656 §18.4).
func DataAttr(b []byte) stun.Setter { return Attr(stun.AttrData, b...) }

// XORAddr reads an XOR-*-ADDRESS attribute of type typ from m.
func XORAddr(m *stun.Message, typ stun.AttrType) (netip.AddrPort, error) {
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

// ErrorCode returns the ERROR-CODE of m, or 0 for a success response.
func ErrorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return int(ec.Code)
}

// Describe is a one-line summary of a response for failure messages.
func Describe(m *stun.Message) string {
	if m == nil {
		return "<no response>"
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err == nil {
		return fmt.Sprintf("%v %d %q", m.Type, ec.Code, ec.Reason)
	}
	return m.String()
}

// Client speaks STUN/TURN to the relay over one UDP or TCP connection and
// performs the long-term credential dance (RFC 8489 §9.2) for every request.
type Client struct {
	// T fails the test on errors Request and friends cannot return.
	T testing.TB
	// Conn is the connection to the server.
	Conn net.Conn
	// PC frames STUN and ChannelData over a stream Conn (pion's
	// turn.NewSTUNConn); nil over UDP.
	PC net.PacketConn
	// Server is Conn's remote address.
	Server net.Addr
	// Username and Password are the long-term credentials; an empty
	// Username sends every request unauthenticated.
	Username, Password string
	// Realm and Nonce are the last challenge's, learned from a 401 or 438.
	Realm string
	Nonce []byte
}

// Dial connects to server over network ("udp" or "tcp") with the given credentials.
func Dial(t testing.TB, network string, server netip.AddrPort, username, password string) *Client {
	t.Helper()
	conn, err := net.DialTimeout(network, server.String(), IOTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, server, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &Client{T: t, Conn: conn, Username: username, Password: password, Server: conn.RemoteAddr()}
	if network == "tcp" {
		c.PC = turn.NewSTUNConn(conn)
	}
	return c
}

// LocalAddr is the client's own transport address.
func (c *Client) LocalAddr() netip.AddrPort {
	return netip.MustParseAddrPort(c.Conn.LocalAddr().String())
}

// Write sends b as it is, within IOTimeout.
func (c *Client) Write(b []byte) error {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(IOTimeout)); err != nil {
		return err
	}
	_, err := c.Conn.Write(b)
	return err
}

// Read returns the next datagram or framed STUN/ChannelData message before the deadline.
func (c *Client) Read(deadline time.Time) ([]byte, error) {
	buf := make([]byte, 65536)
	if c.PC != nil {
		if err := c.PC.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, _, err := c.PC.ReadFrom(buf)
		return buf[:n], err
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	n, err := c.Conn.Read(buf)
	return buf[:n], err
}

// RoundTrip sends m and returns the response with the same transaction ID,
// retransmitting over UDP (RFC 8489 §6.2.1) within IOTimeout.
func (c *Client) RoundTrip(m *stun.Message) (*stun.Message, error) {
	end := time.Now().Add(IOTimeout)
	rto := 250 * time.Millisecond
	for time.Now().Before(end) {
		if err := c.Write(m.Raw); err != nil {
			return nil, fmt.Errorf("write %v: %w", m.Type, err)
		}
		wait := time.Now().Add(rto)
		if c.PC != nil || wait.After(end) {
			wait = end
		}
		for {
			b, err := c.Read(wait)
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
	return nil, fmt.Errorf("no response to %v within %v", m.Type, IOTimeout)
}

// Request sends a request of method with attrs. If the relay challenges it (401
// or 438 stale nonce) the request is repeated once with USERNAME, REALM, NONCE and
// MESSAGE-INTEGRITY. It returns the final response.
func (c *Client) Request(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.T.Helper()
	res, err := c.TryRequest(method, attrs...)
	if err != nil {
		c.T.Fatalf("%v request: %v", method, err)
	}
	return res
}

// TryRequest is Request returning its failure instead of failing the test.
func (c *Client) TryRequest(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for attempt := 0; attempt < 3; attempt++ {
		m, err := c.Build(method, attrs...)
		if err != nil {
			return nil, err
		}
		res, err := c.RoundTrip(m)
		if err != nil {
			return nil, err
		}
		code := ErrorCode(res)
		if code != int(stun.CodeUnauthorized) && code != int(stun.CodeStaleNonce) {
			return res, nil
		}
		if c.Username == "" || attempt > 0 && code == int(stun.CodeUnauthorized) {
			return res, nil
		}
		var realm stun.Realm
		var nonce stun.Nonce
		if realm.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
			// Not a challenge one can answer (RFC 8489 §9.2.4 wants REALM and
			// NONCE); hand it to the test, which names what it wanted instead.
			return res, nil
		}
		c.Realm, c.Nonce = realm.String(), append([]byte(nil), nonce...)
	}
	return nil, fmt.Errorf("%v: still challenged after 3 attempts", method)
}

// Build makes a request message, authenticated when a nonce is known.
func (c *Client) Build(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	if c.Nonce != nil && c.Username != "" {
		setters = append(setters,
			stun.NewUsername(c.Username),
			stun.NewRealm(c.Realm),
			stun.NewNonce(string(c.Nonce)),
			stun.NewLongTermIntegrity(c.Username, c.Realm, c.Password),
		)
	}
	setters = append(setters, stun.Fingerprint)
	return stun.Build(setters...)
}

// Indication sends an unauthenticated indication (Send) with attrs.
func (c *Client) Indication(method stun.Method, attrs ...stun.Setter) {
	c.T.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassIndication)}, attrs...)
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		c.T.Fatalf("build %v indication: %v", method, err)
	}
	if err := c.Write(m.Raw); err != nil {
		c.T.Fatalf("send %v indication: %v", method, err)
	}
}

// Allocate performs an authenticated UDP Allocate with extra attributes and
// returns the final response (success or error).
func (c *Client) Allocate(extra ...stun.Setter) *stun.Message {
	c.T.Helper()
	return c.Request(stun.MethodAllocate, append([]stun.Setter{RequestedTransportUDP()}, extra...)...)
}

// MustAllocate allocates and returns the XOR-RELAYED-ADDRESS, failing the test on an error response.
func (c *Client) MustAllocate(extra ...stun.Setter) (netip.AddrPort, *stun.Message) {
	c.T.Helper()
	res := c.Allocate(extra...)
	if res.Type != stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse) {
		c.T.Fatalf("Allocate from %s: got %s, want success", c.LocalAddr(), Describe(res))
	}
	relayed, err := XORAddr(res, stun.AttrXORRelayedAddress)
	if err != nil {
		c.T.Fatalf("Allocate: %v", err)
	}
	return relayed, res
}

// Release deletes the allocation (Refresh with LIFETIME 0, RFC 8656 §7).
func (c *Client) Release() {
	c.T.Helper()
	res := c.Request(stun.MethodRefresh, Lifetime(0))
	if res.Type.Class != stun.ClassSuccessResponse {
		c.T.Errorf("Refresh lifetime 0: got %s, want success", Describe(res))
	}
}

// ReadMessage reads from the client until want accepts a message or
// IOTimeout passes.
func (c *Client) ReadMessage(t testing.TB, want func([]byte) bool) []byte {
	t.Helper()
	end := time.Now().Add(IOTimeout)
	for {
		b, err := c.Read(end)
		if err != nil {
			t.Fatalf("waiting for a message from the server: %v", err)
		}
		if want(b) {
			return b
		}
	}
}
