//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// The request gate sees every STUN request before pion does. pion lacks
// hooks for several answers the RFCs require, so the gate gives them:
//
//   - nonces bound to the client's 5-tuple, and 438 for any other (see
//     nonce.go);
//   - 401 for a bad credential: pion answers an unknown user or a failed
//     MESSAGE-INTEGRITY with 400, RFC 8489 §9.2.4 wants 401 (with REALM and
//     NONCE so the client may retry). The gate also finds which of several
//     REST secrets signed the request (see verifiedKeys), and throttles
//     sources that keep failing (authThrottle);
//   - 400 for malformed attributes pion accepts (a 2-byte LIFETIME, a
//     truncated XOR-PEER-ADDRESS, a USERNAME of 513 bytes or more);
//   - 437 for a request on a 5-tuple with no allocation, and 441 for one
//     signed by another user than the allocation's: pion sends nothing;
//   - an Allocate LIFETIME below the default means the default (RFC 8656
//     §7.2); pion answers 0 with 508;
//   - 440 when the requested (or, under RFC 6156, the default IPv4) family
//     has no relay address here; pion would answer 508.
//   - 442 for REQUESTED-TRANSPORT TCP; RFC 6062 relaying is not offered.
//   - the RESERVATION-TOKEN family fix (see rewriteReservation);
//   - a discarded message for a bad FINGERPRINT (RFC 8489 §7.3);
//   - a reason phrase on every error response, pion's included.
//
// ChannelData (the per-packet path) is recognised by its first byte and
// passed through untouched.
type gate struct {
	srv *Server
	// streamAuthTimeout (ns) bounds how long a TCP/TLS connection may stay
	// open without an authenticated request (defaultStreamAuthTimeout;
	// tests shorten it).
	streamAuthTimeout atomic.Int64
	nonces            *nonceBook
	throttle          authThrottle
	unauth            unauthStreams
	signers           signerBook
	answered          answerBook

	mu     sync.Mutex
	tokens map[string]tokenEntry // RESERVATION-TOKEN -> reserved port

	dual dualTable // RFC 8656 dual allocations (dualalloc.go)
}

func newGate(s *Server, cfg Config) *gate {
	g := &gate{srv: s, nonces: newNonceBook(defaultNonceLifetime),
		unauth: unauthStreams{maxTotal: cfg.MaxUnauthStreams, maxPerIP: cfg.MaxUnauthStreamsPerSource}}
	g.streamAuthTimeout.Store(int64(defaultStreamAuthTimeout))
	g.dual.srv = s
	return g
}

// signerBook remembers, for a short while, the key that signed each
// request handed to pion, by transaction ID, so that pion's signed error
// answer can be re-signed after the gate adds its reason phrase.
type signerBook struct {
	mu sync.Mutex
	m  map[[stun.TransactionIDSize]byte]signer
}

type signer struct {
	key []byte
	at  time.Time
}

// signerTTL covers pion's handling of one request; signerPruneAt bounds
// the map under a flood.
const (
	signerTTL     = 5 * time.Second
	signerPruneAt = 4096
)

func (b *signerBook) put(id [stun.TransactionIDSize]byte, key []byte, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[[stun.TransactionIDSize]byte]signer{}
	}
	if len(b.m) >= signerPruneAt {
		for k, e := range b.m {
			if now.Sub(e.at) > signerTTL {
				delete(b.m, k)
			}
		}
		if len(b.m) >= 4*signerPruneAt {
			clear(b.m)
		}
	}
	b.m[id] = signer{key: key, at: now}
}

// take returns and forgets the key that signed request id, or nil.
func (b *signerBook) take(id [stun.TransactionIDSize]byte, now time.Time) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[id]
	if !ok || now.Sub(e.at) > signerTTL {
		return nil
	}
	delete(b.m, id)
	return e.key
}

// answerBook keeps the Allocate success responses of the last
// answerTTL, by transaction ID and 5-tuple, to answer retransmissions.
type answerBook struct {
	mu sync.Mutex
	m  map[[stun.TransactionIDSize]byte]answer
}

type answer struct {
	tuple allocKey
	raw   []byte
	at    time.Time
}

// answerTTL covers a client's whole retransmission schedule (RFC 8489
// §6.2.1: Rc = 7 transmissions over 39.5 s with the default RTO).
const answerTTL = 40 * time.Second

func (b *answerBook) put(res []byte, t allocKey, now time.Time) {
	var id [stun.TransactionIDSize]byte
	copy(id[:], res[8:20])
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[[stun.TransactionIDSize]byte]answer{}
	}
	if len(b.m) >= signerPruneAt {
		for k, e := range b.m {
			if now.Sub(e.at) > answerTTL {
				delete(b.m, k)
			}
		}
	}
	b.m[id] = answer{tuple: t, raw: append([]byte(nil), res...), at: now}
}

// get returns the response already sent to request id on t, or nil.
func (b *answerBook) get(id [stun.TransactionIDSize]byte, t allocKey) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[id]
	if !ok || e.tuple != t || time.Since(e.at) > answerTTL {
		return nil
	}
	return e.raw
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

// needsAllocation reports whether a request only makes sense on a 5-tuple
// that has an allocation (RFC 8656 §7.3, §9.2, §11.2: 437 otherwise).
func needsAllocation(m stun.Method) bool {
	switch m {
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind:
		return true
	}
	return false
}

// verdict is what the gate decided for one datagram: send reply instead of
// handing it to pion, or hand pion rewrite instead of the datagram, or drop
// it (counted), or (all zero) hand it on unchanged.
type verdict struct {
	reply   []byte
	rewrite []byte
	drop    bool
	// authed is true when the datagram was a request whose long-term
	// credentials checked out.
	authed bool
	// consumed is true when the gate relayed the datagram itself (data for
	// a dual allocation's IPv6 half, dualalloc.go): nothing goes to pion.
	consumed bool
}

// inspect looks at one datagram or stream frame on the 5-tuple t. msg is a
// per-reader scratch message.
func (g *gate) inspect(b []byte, t fiveTuple, msg *stun.Message) verdict {
	if g.dual.clientData(b, t, msg) {
		return verdict{consumed: true}
	}
	// STUN messages start with two zero bits (RFC 8489 §5); ChannelData with
	// 01. Anything not a well-formed request goes to pion, which drops it.
	if len(b) < 20 || b[0]&0xC0 != 0 || !stun.IsMessage(b) {
		return verdict{}
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	if mt.Class != stun.ClassRequest {
		return verdict{}
	}
	auth := needsAuth(mt.Method)
	if !auth && mt.Method != stun.MethodBinding {
		return verdict{}
	}
	s := g.srv
	msg.Reset()
	msg.Raw = append(msg.Raw[:0], b...)
	if msg.Decode() != nil {
		return verdict{} // pion drops it
	}
	if msg.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(msg) != nil {
		// RFC 8489 §7.3: not a STUN message after all; no answer.
		s.metrics.drops.badFingerprint.Inc()
		return verdict{drop: true}
	}
	if !auth {
		s.opsMetrics.binding(addrFamily(t.src))
		return verdict{}
	}
	if reason := malformedAttr(msg); reason != "" {
		s.metrics.drops.gateReject.Inc()
		s.denyLog.Info("bad request", slog.String("client", t.src.String()), slog.String("method", mt.Method.String()), slog.String("reason", reason))
		return verdict{reply: buildError(msg, stun.CodeBadRequest, nil)}
	}
	if mt.Method == stun.MethodAllocate {
		if res := g.answered.get(msg.TransactionID, t.key()); res != nil {
			// RFC 8489 §6.3.1: a retransmission gets the same answer.
			// pion would see a second Allocate on a 5-tuple it has just
			// allocated and answer 437.
			return verdict{reply: res}
		}
	}
	if !msg.Contains(stun.AttrMessageIntegrity) {
		return verdict{} // pion answers 401 with a nonce (ours, on the way out)
	}
	now := time.Now()
	creds := s.creds.Load()
	var nonce stun.Nonce
	var username stun.Username
	if nonce.GetFrom(msg) != nil || username.GetFrom(msg) != nil || !msg.Contains(stun.AttrRealm) {
		return verdict{} // pion answers 400
	}
	if !g.nonces.valid(string(nonce), t, now) {
		// RFC 8489 §9.2.4 step 3: a nonce minted for another 5-tuple (a
		// replay) or expired gets 438 and a fresh one.
		s.metrics.authFailures.WithLabelValues(authStaleNonce).Inc()
		return verdict{reply: buildError(msg, stun.CodeStaleNonce, nil,
			stun.NewRealm(creds.realm), stun.NewNonce(g.nonces.mint(t, now)))}
	}
	src := addrPortOf(t.src).Addr()
	if !g.throttle.allow(src, string(username), now) {
		s.metrics.authFailures.WithLabelValues(authThrottled).Inc()
		s.metrics.drops.authThrottled.Inc()
		return verdict{drop: true}
	}
	userID, key, reason := creds.authenticate(msg, now)
	if reason != "" {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		if reason == authMalformed {
			return verdict{} // pion answers 400
		}
		g.throttle.fail(src, string(username), now)
		// The username (never the password) says whose credential failed:
		// an expired REST username or a mistyped user.
		s.denyLog.Info("auth failure", slog.String("client", t.src.String()), slog.String("proto", t.proto), slog.String("username", string(username)), slog.String("reason", reason), slog.String("method", mt.Method.String()))
		s.metrics.drops.gateReject.Inc()
		// The nonce is still good: echoing it tells the client that its
		// credentials, not its nonce, failed (a new one would make clients
		// retry the same password).
		return verdict{reply: buildError(msg, stun.CodeUnauthorized, nil, stun.NewRealm(creds.realm), nonce)}
	}
	v := g.authenticated(msg, mt.Method, t, userID, key, now)
	v.authed = true
	if v.reply == nil {
		if v.rewrite == nil {
			v.rewrite = g.forward(msg, key, nil)
		}
		// pion handles it next and asks the AuthHandler for the key.
		s.verified.put(t.src, string(username), verifiedKey{userID: userID, key: key, at: now})
		g.signers.put(msg.TransactionID, key, now)
	}
	return v
}

// authenticated decides on a request whose credentials checked out.
func (g *gate) authenticated(msg *stun.Message, method stun.Method, t fiveTuple, userID string, key []byte, now time.Time) verdict {
	s := g.srv
	if needsAllocation(method) {
		owner, ok := s.allocs.owner(t.key())
		switch {
		case !ok:
			s.metrics.drops.gateReject.Inc()
			return verdict{reply: buildError(msg, stun.CodeAllocMismatch, key)}
		case owner != userID:
			s.metrics.drops.gateReject.Inc()
			return verdict{reply: buildError(msg, stun.CodeWrongCredentials, key)}
		}
	}
	switch method {
	case stun.MethodChannelBind:
		// pion accepts numbers below 0x4000. The range, and why it goes
		// past RFC 8656's 0x4FFF, is the data plane's: one definition.
		if v, err := msg.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
			if n := binary.BigEndian.Uint16(v); n < channeldata.MinNumber || n > channeldata.MaxNumber {
				s.metrics.drops.gateReject.Inc()
				return verdict{reply: buildError(msg, stun.CodeBadRequest, key)}
			}
		}
		if v := g.checkPeers(msg, t.src, key); v.reply != nil {
			return v
		}
		if v := g.checkCaps(msg, t, key); v.reply != nil {
			return v
		}
		return g.dual.channelBind(msg, t, key, now)
	case stun.MethodCreatePermission:
		if v := g.checkPeers(msg, t.src, key); v.reply != nil {
			return v
		}
		if v := g.checkCaps(msg, t, key); v.reply != nil {
			return v
		}
		return g.dual.createPermission(msg, t, key, now)
	case stun.MethodRefresh:
		if v, err := msg.Get(stun.AttrLifetime); err == nil && len(v) == 4 && binary.BigEndian.Uint32(v) == 0 &&
			!msg.Contains(stun.AttrRequestedAddressFamily) {
			// RFC 8656 §7: LIFETIME 0 deletes the allocation; the session
			// log says so rather than "expired".
			s.allocs.markDeleted(t.key())
		}
		return g.dual.refresh(msg, t, key, now)
	case stun.MethodAllocate:
	default:
		return verdict{}
	}
	if v, err := msg.Get(stun.AttrRequestedTransport); err == nil && len(v) >= 1 && v[0] == 6 {
		s.metrics.drops.gateReject.Inc()
		return verdict{reply: buildError(msg, stun.CodeUnsupportedTransProto, key)}
	}
	if v, ok := g.tryAlternate(msg, t, userID, key); ok {
		return v
	}
	if v, ok := g.dual.allocate(msg, t, userID, key, now); ok {
		return v
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
	if v, err := msg.Get(stun.AttrLifetime); err == nil && binary.BigEndian.Uint32(v) < uint32(defaultAllocationLifetime/time.Second) {
		// RFC 8656 §7.2: a requested lifetime below the default gets the
		// default; pion would answer LIFETIME 0 with 508.
		return verdict{rewrite: g.forward(msg, key, []stun.AttrType{stun.AttrLifetime})}
	}
	return verdict{}
}

// defaultAllocationLifetime is pion's and RFC 8656 §7.2's default
// allocation lifetime.
const defaultAllocationLifetime = 10 * time.Minute

// malformedAttr checks the lengths of the attributes pion reads without
// checking them, and the USERNAME limit of RFC 8489 §14.3 (fewer than 513
// bytes, as RFC 5389 allowed). It returns a reason for a 400, or "".
func malformedAttr(m *stun.Message) string {
	for _, a := range m.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break // what follows is not covered and is ignored
		}
		switch a.Type {
		case stun.AttrLifetime, stun.AttrRequestedTransport, stun.AttrChannelNumber, stun.AttrRequestedAddressFamily:
			if len(a.Value) != 4 {
				return a.Type.String() + ": length " + strconv.Itoa(len(a.Value)) + ", want 4"
			}
		case stun.AttrXORPeerAddress:
			// RFC 8489 §14.2: 8 bytes for IPv4, 20 for IPv6.
			if n := len(a.Value); n < 4 || (a.Value[1] == 0x01 && n != 8) || (a.Value[1] == 0x02 && n != 20) {
				return "XOR-PEER-ADDRESS: length " + strconv.Itoa(n) + " does not fit its family"
			}
		case stun.AttrUsername:
			if len(a.Value) >= 513 {
				return "USERNAME: " + strconv.Itoa(len(a.Value)) + " bytes, limit 512"
			}
		}
	}
	return ""
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
		v := pol.Check(a)
		if v.Allowed && v.Reason == netaddr.ReasonRelayAddress && msg.Type.Method == stun.MethodChannelBind &&
			!s.relayedPortOK(netip.AddrPortFrom(a, uint16(pa.Port))) {
			// A channel's peer is a transport address: on the relay's own
			// IP only a live relayed one (the data plane relays bound
			// channels without asking again).
			v = netaddr.Verdict{Reason: netaddr.ReasonOwnAddress, Addr: v.Addr}
		}
		if !v.Allowed {
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
	out := g.forward(msg, key, []stun.AttrType{stun.AttrReservationToken},
		stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{fam, 0, 0, 0}})
	if out != nil {
		g.srv.gen.expectReservation(userID, port, now)
	}
	return out
}

// forward returns the request as pion should get it: the nonce pion issued
// in place of ours, without the attributes in drop, with add appended, and
// re-signed with key (MESSAGE-INTEGRITY, and FINGERPRINT when the request
// had one). MESSAGE-INTEGRITY-SHA256 is dropped: pion checks only the SHA-1
// one. It returns nil when the request cannot be rebuilt; pion then gets
// it as it came and answers 438 for our nonce, which teaches the gate
// pion's (nonce.go).
func (g *gate) forward(msg *stun.Message, key []byte, drop []stun.AttrType, add ...stun.RawAttribute) []byte {
	pionNonce := g.nonces.pionNonce()
	out := stun.New()
	out.TransactionID = msg.TransactionID
	out.Type = msg.Type
	out.WriteHeader()
	for _, a := range msg.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break // anything after it is not covered and is ignored
		}
		switch {
		case a.Type == stun.AttrMessageIntegritySHA256, slices.Contains(drop, a.Type):
			continue
		case a.Type == stun.AttrNonce && pionNonce != "":
			out.Add(stun.AttrNonce, []byte(pionNonce))
			continue
		}
		out.Add(a.Type, a.Value)
	}
	for _, a := range add {
		out.Add(a.Type, a.Value)
	}
	if stun.MessageIntegrity(key).AddTo(out) != nil {
		return nil
	}
	if msg.Contains(stun.AttrFingerprint) && stun.Fingerprint.AddTo(out) != nil {
		return nil
	}
	return out.Raw
}

// noteResponse looks at a message pion is sending on the 5-tuple t and
// returns what should go out instead: pion's NONCE replaced by one of ours
// for t, a reason phrase where pion left it empty. It also records the
// RESERVATION-TOKEN of an Allocate success. Anything that is not a STUN
// response costs two byte compares.
func (g *gate) noteResponse(b []byte, t fiveTuple) []byte {
	if len(b) < 20 || b[0]&0xC0 != 0 {
		return b // ChannelData
	}
	if r := g.dual.response(b); r != nil {
		b = r // a dual allocation's answer, completed (dualalloc.go)
	}
	switch {
	case b[0]&0x01 == 0x01 && b[1]&0x10 == 0x10: // error response
		return g.fixError(b, t)
	case b[0] == 0x01 && b[1] == 0x03: // Allocate success
		g.answered.put(b, t.key(), time.Now())
		g.noteReservation(b)
	}
	return b
}

// fixError rewrites an error response pion is sending (see noteResponse).
func (g *gate) fixError(b []byte, t fiveTuple) []byte {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return b
	}
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return b
	}
	var nonce stun.Nonce
	hasNonce := nonce.GetFrom(m) == nil
	now := time.Now()
	if hasNonce {
		g.nonces.notePion(string(nonce), now)
	}
	if !hasNonce && len(ec.Reason) > 0 {
		return b
	}
	var key []byte
	if m.Contains(stun.AttrMessageIntegrity) {
		if key = g.signers.take(m.TransactionID, now); key == nil {
			return b // signed with a key the gate does not hold: leave it
		}
	}
	out := stun.New()
	out.TransactionID = m.TransactionID
	out.Type = m.Type
	out.WriteHeader()
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrFingerprint:
			continue
		case stun.AttrErrorCode:
			if len(ec.Reason) == 0 {
				ec.Reason = []byte(reasonPhrase(ec.Code))
			}
			if ec.AddTo(out) != nil {
				return b
			}
		case stun.AttrNonce:
			out.Add(stun.AttrNonce, []byte(g.nonces.mint(t, now)))
		default:
			out.Add(a.Type, a.Value)
		}
	}
	if key != nil && stun.MessageIntegrity(key).AddTo(out) != nil {
		return b
	}
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.AddTo(out) != nil {
		return b
	}
	return out.Raw
}

// noteReservation records the RESERVATION-TOKEN of an Allocate success
// response pion is sending.
func (g *gate) noteReservation(b []byte) {
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

// buildError builds an error response to req, with the code's reason
// phrase; key signs it when the request was authenticated (RFC 8489
// §9.2.4).
func buildError(req *stun.Message, code stun.ErrorCode, key []byte, extra ...stun.Setter) []byte {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: code, Reason: []byte(reasonPhrase(code))},
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
