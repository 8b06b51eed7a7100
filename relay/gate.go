package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/internal/dataplane"
	"github.com/isthmusrelay/isthmus/netaddr"
)

// The request gate sees every STUN request before pion does. pion lacks
// hooks for three answers the RFCs require, so the gate gives them:
//
//   - 401 for a bad credential: pion answers an unknown user or a failed
//     MESSAGE-INTEGRITY with 400, RFC 8489 §9.2.4 wants 401 (with REALM and
//     NONCE so the client may retry). The gate also finds which of several
//     REST secrets signed the request (see verifiedKeys).
//   - 440 when the requested (or, under RFC 6156, the default IPv4) family
//     has no relay address here; pion would answer 508.
//   - 442 for REQUESTED-TRANSPORT TCP; RFC 6062 relaying is not offered.
//   - the RESERVATION-TOKEN family fix (see rewriteReservation).
//   - a bound on TCP/TLS connections that never authenticate
//     (defaultStreamAuthTimeout): pion keeps them open indefinitely.
//
// ChannelData (the per-packet path) is recognised by its first byte and
// passed through untouched.
type gate struct {
	srv *Server
	// streamAuthTimeout (ns) bounds how long a TCP/TLS connection may stay
	// open without an authenticated request (defaultStreamAuthTimeout;
	// tests shorten it).
	streamAuthTimeout atomic.Int64

	mu     sync.Mutex
	tokens map[string]tokenEntry // RESERVATION-TOKEN -> reserved port
}

// tokenEntry is a RESERVATION-TOKEN pion handed out, seen in its response.
type tokenEntry struct {
	port  int
	until time.Time
}

// turn methods that carry long-term credentials.
func needsAuth(m stun.Method) bool {
	switch m {
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission,
		stun.MethodChannelBind, stun.MethodConnect, stun.MethodConnectionBind:
		return true
	}
	return false
}

// verdict is what the gate decided for one datagram: send reply instead of
// handing it to pion, or hand pion rewrite instead of the datagram, or (both
// nil) hand it on unchanged.
type verdict struct {
	reply   []byte
	rewrite []byte
	// authed is true when the datagram was a request whose long-term
	// credentials checked out.
	authed bool
}

// inspect looks at one datagram from src. msg is a per-reader scratch
// message.
func (g *gate) inspect(b []byte, src net.Addr, msg *stun.Message) verdict {
	// STUN messages start with two zero bits (RFC 8489 §5); ChannelData with
	// 01. Anything not a well-formed request goes to pion, which drops it.
	if len(b) < 20 || b[0]&0xC0 != 0 || !stun.IsMessage(b) {
		return verdict{}
	}
	t := binary.BigEndian.Uint16(b[0:2])
	var mt stun.MessageType
	mt.ReadValue(t)
	if mt.Class != stun.ClassRequest || !needsAuth(mt.Method) {
		return verdict{}
	}
	msg.Reset()
	msg.Raw = append(msg.Raw[:0], b...)
	if msg.Decode() != nil || !msg.Contains(stun.AttrMessageIntegrity) {
		return verdict{} // pion answers 401 with a nonce, or 400
	}
	s := g.srv
	now := time.Now()
	creds := s.creds.Load()
	userID, key, reason := creds.authenticate(msg, now)
	if reason != "" {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		s.denyLog.Debug().Str("client", src.String()).Str("reason", reason).Str("method", mt.Method.String()).Msg("auth failure")
		if reason == authMalformed {
			return verdict{} // pion answers 400
		}
		s.metrics.drops.gateReject.Inc()
		var nonce stun.Nonce
		_ = nonce.GetFrom(msg)
		return verdict{reply: buildError(msg, stun.CodeUnauthorized, nil, stun.NewRealm(creds.realm), nonce)}
	}
	v := g.authenticated(msg, mt.Method, src, userID, key, now)
	v.authed = true
	if v.reply == nil {
		// pion handles it next and asks the AuthHandler for the key.
		var user stun.Username
		_ = user.GetFrom(msg)
		s.verified.put(src, string(user), verifiedKey{userID: userID, key: key, at: now})
	}
	return v
}

// authenticated decides on a request whose credentials checked out.
func (g *gate) authenticated(msg *stun.Message, method stun.Method, src net.Addr, userID string, key []byte, now time.Time) verdict {
	s := g.srv
	switch method {
	case stun.MethodChannelBind:
		// pion accepts numbers below 0x4000. The range, and why it goes
		// past RFC 8656's 0x4FFF, is the data plane's: one definition.
		if v, err := msg.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
			if n := binary.BigEndian.Uint16(v); n < dataplane.MinChannelNumber || n > dataplane.MaxChannelNumber {
				s.metrics.drops.gateReject.Inc()
				return verdict{reply: buildError(msg, stun.CodeBadRequest, key)}
			}
		}
		return g.checkPeers(msg, src, key)
	case stun.MethodCreatePermission:
		return g.checkPeers(msg, src, key)
	case stun.MethodAllocate:
	default:
		return verdict{}
	}
	if v, err := msg.Get(stun.AttrRequestedTransport); err == nil && len(v) >= 1 && v[0] == 6 {
		s.metrics.drops.gateReject.Inc()
		return verdict{reply: buildError(msg, stun.CodeUnsupportedTransProto, key)}
	}
	if msg.Contains(stun.AttrReservationToken) {
		if msg.Contains(stun.AttrRequestedAddressFamily) || msg.Contains(stun.AttrEvenPort) {
			// RFC 6156 §4.2 and RFC 8656 §7.2 rule 5: 400, whether or not
			// the token is known (pion would look the token up first and
			// answer 508 for a token another socket's manager holds).
			s.metrics.drops.gateReject.Inc()
			return verdict{reply: buildError(msg, stun.CodeBadRequest, key)}
		}
		return verdict{rewrite: g.rewriteReservation(msg, userID, key, now)}
	}
	fam := netaddr.IPv4 // RFC 6156 §4.2: no attribute means IPv4
	if v, err := msg.Get(stun.AttrRequestedAddressFamily); err == nil {
		if len(v) != 4 {
			return verdict{} // pion answers 400
		}
		switch v[0] {
		case 0x01:
		case 0x02:
			fam = netaddr.IPv6
		default:
			return verdict{} // pion answers 440
		}
	}
	if !s.gen.hasFamily(fam) {
		s.metrics.drops.gateReject.Inc()
		return verdict{reply: buildError(msg, stun.CodeAddrFamilyNotSupported, key)}
	}
	return verdict{}
}

// checkPeers applies the peer policy to every XOR-PEER-ADDRESS of a
// CreatePermission or ChannelBind and answers 403 for a denied one. pion's
// PermissionHandler alone is not enough: pion answers a denied ChannelBind
// with 401, and refuses an IPv4-mapped IPv6 peer with 443 (its family check
// runs first) where the policy must say 403.
func (g *gate) checkPeers(msg *stun.Message, src net.Addr, key []byte) verdict {
	s := g.srv
	pol := s.policy.Load()
	denied := false
	_ = msg.ForEach(stun.AttrXORPeerAddress, func(m *stun.Message) error {
		var pa stun.XORMappedAddress
		if pa.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
			return nil // pion answers 400
		}
		a, ok := netip.AddrFromSlice(pa.IP)
		if !ok {
			return nil
		}
		if v := pol.Check(a); !v.Allowed {
			s.noteDenied(src, a, v)
			denied = true
			return errPeerDenied
		}
		return nil
	})
	if denied {
		s.metrics.drops.gateReject.Inc()
		return verdict{reply: buildError(msg, stun.CodeForbidden, key)}
	}
	return verdict{}
}

var errPeerDenied = errors.New("relay: peer denied by policy")

// rewriteReservation fixes pion's family for the second half of an
// EVEN-PORT pair. RFC 6156 §4.2 forbids REQUESTED-ADDRESS-FAMILY next to
// RESERVATION-TOKEN, so pion creates that allocation with the default
// family (IPv4 under StrictAddressFamily) and then refuses IPv6 peers with
// 443 even if the port was bound on IPv6; its reservations also live in one
// per-socket allocation manager, which another per-core socket's manager
// does not know. Having seen the token in pion's response, the gate turns
// the request into the equivalent explicit one: no token, the reserved
// port's family, re-signed with the key that signed the original; the
// generator then binds exactly the reserved port on the first allocation's
// IP. The client sees what RFC 8656 §7.2 describes. An unknown token is
// left to pion (508).
func (g *gate) rewriteReservation(msg *stun.Message, userID string, key []byte, now time.Time) []byte {
	tok, err := msg.Get(stun.AttrReservationToken)
	if err != nil {
		return nil // pion answers 400
	}
	port, ok := g.reservedPort(string(tok), now)
	if !ok {
		return nil
	}
	ip, ok := g.srv.pool.heldIP(port, now)
	if !ok {
		return nil
	}
	fam := byte(0x01)
	if ip.Is6() {
		fam = 0x02
	}
	out := stun.New()
	out.TransactionID = msg.TransactionID
	out.Type = msg.Type
	out.WriteHeader()
	hadFingerprint := msg.Contains(stun.AttrFingerprint)
	for _, a := range msg.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break // anything after it is not covered and is ignored
		}
		if a.Type == stun.AttrReservationToken || a.Type == stun.AttrMessageIntegritySHA256 {
			continue
		}
		out.Add(a.Type, a.Value)
	}
	out.Add(stun.AttrRequestedAddressFamily, []byte{fam, 0, 0, 0})
	if stun.MessageIntegrity(key).AddTo(out) != nil {
		return nil
	}
	if hadFingerprint && stun.Fingerprint.AddTo(out) != nil {
		return nil
	}
	g.srv.gen.expectReservation(userID, port, now)
	return out.Raw
}

// noteResponse records the RESERVATION-TOKEN of an Allocate success
// response pion is sending. Cheap for everything else: two byte compares.
func (g *gate) noteResponse(b []byte) {
	// Allocate success response: type 0x0103.
	if len(b) < 20 || b[0] != 0x01 || b[1] != 0x03 {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return
	}
	tok, err := m.Get(stun.AttrReservationToken)
	if err != nil {
		return
	}
	var relayed stun.XORMappedAddress
	if relayed.GetFromAs(m, stun.AttrXORRelayedAddress) != nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tokens == nil {
		g.tokens = map[string]tokenEntry{}
	}
	for k, e := range g.tokens {
		if now.After(e.until) {
			delete(g.tokens, k)
		}
	}
	// The reserved port is the one after the relayed port (RFC 8656 §7.2).
	g.tokens[string(tok)] = tokenEntry{port: relayed.Port + 1, until: now.Add(reservationHold)}
}

func (g *gate) reservedPort(tok string, now time.Time) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.tokens[tok]
	if !ok || now.After(e.until) {
		return 0, false
	}
	return e.port, true
}

// buildError builds an error response to req; key signs it when the request
// was authenticated (RFC 8489 §9.2.4).
func buildError(req *stun.Message, code stun.ErrorCode, key []byte, extra ...stun.Setter) []byte {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code},
	}
	for _, e := range extra {
		if n, ok := e.(stun.Nonce); ok && len(n) == 0 {
			continue
		}
		setters = append(setters, e)
	}
	if key != nil {
		setters = append(setters, stun.MessageIntegrity(key))
	}
	m, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	return m.Raw
}

// gatedPacketConn is a UDP listener as pion sees it: the gate runs in the
// read path of pion's per-socket read loop.
type gatedPacketConn struct {
	net.PacketConn
	gate *gate
	msg  stun.Message // scratch; only pion's single read loop calls ReadFrom
	done func()       // called once when the read loop ends
	once sync.Once
}

func (c *gatedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			c.once.Do(c.done)
			return n, addr, err
		}
		v := c.gate.inspect(b[:n], addr, &c.msg)
		switch {
		case v.reply != nil:
			_, _ = c.PacketConn.WriteTo(v.reply, addr)
			continue
		case v.rewrite != nil && len(v.rewrite) <= len(b):
			return copy(b, v.rewrite), addr, nil
		}
		return n, addr, nil
	}
}

func (c *gatedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.gate.noteResponse(b)
	return c.PacketConn.WriteTo(b, addr)
}

// gatedListener wraps a TCP (or TLS) listener: it tracks accepted
// connections so Close can end them (pion leaves them to the client), and
// frames each stream so the gate sees whole STUN messages.
type gatedListener struct {
	net.Listener
	gate *gate

	mu     sync.Mutex
	conns  map[*gatedStreamConn]struct{}
	closed bool
}

// tlsHandshakeTimeout bounds a TLS client that never finishes its handshake.
const tlsHandshakeTimeout = 10 * time.Second

// defaultStreamAuthTimeout bounds how long a TCP or TLS connection may stay
// open before it sends a request with valid credentials. pion keeps a
// stream (a goroutine and two frame buffers) for as long as the client
// keeps it open, so without a bound idle unauthenticated connections would
// exhaust the relay's memory and descriptors. A real client authenticates
// within a round trip or two of connecting.
const defaultStreamAuthTimeout = 30 * time.Second

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &gatedStreamConn{Conn: c, frames: turn.NewSTUNConn(c), l: l,
		authBy: time.Now().Add(time.Duration(l.gate.streamAuthTimeout.Load()))}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[gc] = struct{}{}
	l.mu.Unlock()
	return gc, nil
}

// Close closes the listener and every connection it accepted.
func (l *gatedListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*gatedStreamConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (l *gatedListener) forget(c *gatedStreamConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// maxFrame is the largest STUN message or padded ChannelData frame.
const maxFrame = 20 + 65535 + 4

// gatedStreamConn hands pion the stream one frame at a time after the gate
// has seen it. pion frames it again with its own STUNConn, which is cheap.
type gatedStreamConn struct {
	net.Conn
	frames    *turn.STUNConn
	l         *gatedListener
	buf       []byte
	pending   []byte
	msg       stun.Message
	handshake bool
	// authBy is when the connection is closed unless it has sent an
	// authenticated request (authed) by then.
	authBy time.Time
	authed bool
	once   sync.Once
}

func (c *gatedStreamConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *gatedStreamConn) next() error {
	if tc, ok := c.Conn.(*tls.Conn); ok && !c.handshake {
		c.handshake = true
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	if c.buf == nil {
		c.buf = make([]byte, maxFrame)
	}
	for {
		if !c.authed {
			if err := c.Conn.SetReadDeadline(c.authBy); err != nil {
				return err
			}
		}
		n, addr, err := c.frames.ReadFrom(c.buf)
		if err != nil {
			if !c.authed && errors.Is(err, os.ErrDeadlineExceeded) {
				c.l.gate.srv.metrics.authFailures.WithLabelValues(authStreamTimeout).Inc()
			}
			return err
		}
		if n > len(c.buf) {
			continue // cannot happen with maxFrame; never slice past the buffer
		}
		v := c.l.gate.inspect(c.buf[:n], addr, &c.msg)
		if v.authed && !c.authed {
			c.authed = true
			if err := c.Conn.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
		}
		switch {
		case v.reply != nil:
			if _, err := c.Conn.Write(v.reply); err != nil {
				return err
			}
			continue
		case v.rewrite != nil:
			c.pending = v.rewrite
			return nil
		}
		c.pending = c.buf[:n]
		return nil
	}
}

func (c *gatedStreamConn) Write(b []byte) (int, error) {
	c.l.gate.noteResponse(b)
	return c.Conn.Write(b)
}

func (c *gatedStreamConn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}
