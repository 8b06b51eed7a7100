//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// RFC 8656 dual allocations: an Allocate with ADDITIONAL-ADDRESS-FAMILY
// (IPv6) gets an IPv4 and an IPv6 relayed transport address on one 5-tuple.
//
// pion/turn keeps one relay socket per allocation and refuses peers of the
// other family with 443, so the relay builds the IPv6 half next to pion's
// (IPv4) allocation, through the request gate:
//
//   - Allocate: pion ignores the attribute (it is comprehension-optional)
//     and creates the IPv4 allocation; when the gate sees pion's success
//     response it binds the IPv6 relay socket, adds its XOR-RELAYED-ADDRESS
//     (or an ADDRESS-ERROR-CODE) and signs the response again with the key
//     that signed the request. Without IPv4 relay addresses the request is
//     handed to pion as an explicit IPv6 one, answered with ADDRESS-ERROR-CODE
//     for IPv4.
//   - CreatePermission and ChannelBind for IPv6 peers are answered by the
//     gate, which keeps their permissions and channels (one channel number
//     space per allocation: a number pion bound to an IPv4 peer is refused
//     for an IPv6 one and the reverse); a request mixing both families goes
//     to pion without its IPv6 peers, which are installed when pion's
//     success response passes.
//   - Send indications and ChannelData to IPv6 peers, and datagrams from
//     them, are relayed by the data plane (the IPv6 socket is attached to
//     pion's allocation there, see dataplane.Plane.AttachRelay) or, on
//     pion's path (TCP/TLS clients, no data plane), by the gate and a reader
//     goroutine per IPv6 socket.
//   - Refresh (RFC 8656 §7.3): each family has its own lifetime. Without
//     REQUESTED-ADDRESS-FAMILY both are refreshed; with it only that family,
//     and LIFETIME 0 deletes only that family's relayed address; a family
//     the allocation does not have is answered 443. pion's own lifetime is
//     kept at the longer of the two, so pion never ends the allocation
//     while one half is alive. A deleted IPv4 half is retired: its socket
//     relays nothing more (pion's path drops, the data plane forgets its
//     permissions) and requests for it get 443; its port stays bound until
//     the allocation ends, since pion's allocation owns it.
//   - The IPv6 half ends with pion's allocation (its relay socket closing),
//     with its own lifetime, or at Server.Close.
//
// Quotas: a dual allocation is one allocation (one 5-tuple) and counts once
// toward user_quota, as in coturn, whose per-user quota counts sessions.
// Each relayed address holds its own socket and port, so it counts twice
// toward max_allocations, which bounds relay ports; an IPv6 half refused by
// that bound gets ADDRESS-ERROR-CODE 508.

// Attribute code points. coturn 4.6.1 (turnutils_uclient -Z) still sends
// the draft-ietf-tram-turnbis code point for ADDITIONAL-ADDRESS-FAMILY; it
// is accepted too, and answered with the draft's ADDRESS-ERROR-CODE.
const (
	attrAdditionalAddressFamily      stun.AttrType = 0x8000 // RFC 8656 §18.11
	attrAddressErrorCode             stun.AttrType = 0x8001 // RFC 8656 §18.12
	attrAdditionalAddressFamilyDraft stun.AttrType = 0x8032 // coturn ns_turn_msg_defs_experimental.h
	attrAddressErrorCodeDraft        stun.AttrType = 0x8033
)

// REQUESTED-ADDRESS-FAMILY values (RFC 8656 §18.10).
const (
	familyIPv4 byte = 0x01
	familyIPv6 byte = 0x02
)

// Lifetimes as pion applies them (RFC 8656 §7.2, §9, §12).
const (
	defaultLifetime    = 10 * time.Minute
	maxLifetime        = time.Hour
	permissionLifetime = 5 * time.Minute
	channelLifetime    = 10 * time.Minute
	pendingHold        = 30 * time.Second // a request's wait for pion's answer
)

func addrPortOfAddr(a net.Addr) (netip.AddrPort, bool) {
	var ip net.IP
	var port int
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, port = v.IP, v.Port
	case *net.TCPAddr:
		ip, port = v.IP, v.Port
	default:
		return netip.AddrPort{}, false
	}
	na, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 0xffff {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(na.Unmap(), uint16(port)), true //nolint:gosec // checked
}

// writeClient sends b to the client of the 5-tuple t: on the listener
// socket (UDP) or the connection (TCP/TLS) the request came on.
func writeClient(t fiveTuple, b []byte) error {
	if t.conn != nil {
		_, err := t.conn.Write(b)
		return err
	}
	if t.pc == nil {
		return net.ErrClosed
	}
	_, err := t.pc.WriteTo(b, t.src)
	return err
}

// dualTable is the gate's state for dual allocations.
type dualTable struct {
	srv *Server

	live   atomic.Int32 // dual allocations: the per-datagram hooks skip all work at 0
	allocs sync.Map     // allocKey -> *dualAlloc
	relays sync.Map     // netip.AddrPort (advertised) -> *relayConn, every relay socket

	pendingN atomic.Int32
	mu       sync.Mutex
	pending  map[[stun.TransactionIDSize]byte]*pendingReq
}

type pendingKind uint8

const (
	pendAllocate pendingKind = iota
	pendPermission
	pendRefresh
)

// pendingReq is a request the gate handed pion and whose response it must
// complete or act on.
type pendingReq struct {
	kind  pendingKind
	until time.Time
	key   []byte
	tuple allocKey

	// pendAllocate
	userID, realm string
	ft            fiveTuple
	dual          bool          // bind the IPv6 half on success
	errType       stun.AttrType // ADDRESS-ERROR-CODE code point to answer with
	refusedFam    byte          // a family refused before pion (0: none)

	// pendPermission: IPv6 peers to install when pion's answer is a success.
	peers []netip.Addr

	// pendRefresh: the family asked for (0: both) and the lifetime the
	// client asked for (pion was handed the longer of it and the other
	// half's).
	fam      byte
	lifetime time.Duration
}

func (t *dualTable) lookup(tu allocKey) *dualAlloc {
	if t.live.Load() == 0 {
		return nil
	}
	v, ok := t.allocs.Load(tu)
	if !ok {
		return nil
	}
	return v.(*dualAlloc)
}

func (t *dualTable) addPending(id [stun.TransactionIDSize]byte, p *pendingReq, now time.Time) {
	p.until = now.Add(pendingHold)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[[stun.TransactionIDSize]byte]*pendingReq{}
	}
	for k, e := range t.pending {
		if now.After(e.until) {
			delete(t.pending, k)
		}
	}
	t.pending[id] = p
	t.pendingN.Store(int32(len(t.pending))) //nolint:gosec // bounded by requests in 30 s
}

func (t *dualTable) takePending(id [stun.TransactionIDSize]byte) *pendingReq {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[id]
	if !ok {
		return nil
	}
	delete(t.pending, id)
	t.pendingN.Store(int32(len(t.pending))) //nolint:gosec // bounded
	if time.Now().After(p.until) {
		return nil
	}
	return p
}

// familyAttr returns the family byte of a 4-byte address-family attribute
// value; ok is false when it is malformed.
func familyAttr(v []byte) (byte, bool) {
	if len(v) != 4 {
		return 0, false
	}
	return v[0], true
}

// allocate checks an authenticated Allocate for ADDITIONAL-ADDRESS-FAMILY
// (RFC 8656 §7.2). handled is false when the gate is to go on as for any
// Allocate: the request has none, or pion is to allocate the IPv4 half as
// usual (the IPv6 half is added when its answer passes, see response).
func (t *dualTable) allocate(msg *stun.Message, ft fiveTuple, userID string, key []byte, now time.Time) (v verdict, handled bool) {
	s := t.srv
	aafType := attrAdditionalAddressFamily
	val, err := msg.Get(aafType)
	if err != nil {
		aafType = attrAdditionalAddressFamilyDraft
		if val, err = msg.Get(aafType); err != nil {
			return verdict{}, false
		}
	}
	reject := func(code stun.ErrorCode) (verdict, bool) {
		s.metrics.drops.gateReject.Inc()
		return verdict{reply: buildError(msg, code, key)}, true
	}
	fam, ok := familyAttr(val)
	switch {
	case !ok:
		return reject(stun.CodeBadRequest)
	case msg.Contains(stun.AttrRequestedAddressFamily):
		// RFC 8656 §7.2: both attributes: 400.
		return reject(stun.CodeBadRequest)
	case msg.Contains(stun.AttrReservationToken):
		// RFC 8656 §7.2 rule 5.
		return reject(stun.CodeBadRequest)
	case fam == familyIPv4:
		// RFC 8656 §18.11: IPv6 is the only valid value.
		return reject(stun.CodeBadRequest)
	case fam != familyIPv6:
		return reject(stun.CodeAddrFamilyNotSupported)
	}
	if ep, err := msg.Get(stun.AttrEvenPort); err == nil && len(ep) >= 1 && ep[0]&0x80 != 0 {
		// RFC 8656 §7.2 rule 6: EVEN-PORT with R set cannot reserve a pair
		// across two families.
		return reject(stun.CodeBadRequest)
	}
	var realm stun.Realm
	_ = realm.GetFrom(msg)
	p := &pendingReq{kind: pendAllocate, key: key, tuple: ft.key(), userID: userID, realm: realm.String(),
		ft: ft, errType: attrAddressErrorCode}
	if aafType == attrAdditionalAddressFamilyDraft {
		p.errType = attrAddressErrorCodeDraft
	}
	has4, has6 := s.gen.hasFamily(netaddr.IPv4), s.gen.hasFamily(netaddr.IPv6)
	switch {
	case has4 && has6:
		p.dual = true
	case has4:
		p.refusedFam = familyIPv6
	case has6:
		// IPv6 only: pion allocates it as an explicit IPv6 request.
		p.refusedFam = familyIPv4
		drop := []stun.AttrType{aafType}
		if v, err := msg.Get(stun.AttrLifetime); err == nil && len(v) == 4 &&
			binary.BigEndian.Uint32(v) < uint32(defaultAllocationLifetime/time.Second) {
			drop = append(drop, stun.AttrLifetime) // as the gate does for any Allocate
		}
		out := t.srv.gate.forward(msg, key, drop,
			stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{familyIPv6, 0, 0, 0}})
		if out == nil {
			return verdict{}, false
		}
		t.addPending(msg.TransactionID, p, now)
		return verdict{rewrite: out}, true
	default:
		return reject(stun.CodeAddrFamilyNotSupported)
	}
	t.addPending(msg.TransactionID, p, now)
	return verdict{}, false
}

// response completes or acts on pion's response b when it answers a request
// the gate handed pion; it returns the response to send instead, or nil.
// Cheap for every other datagram pion writes: one atomic load.
func (t *dualTable) response(b []byte) []byte {
	// Responses only: the class bit C1 (0x0100) is set in success and error
	// responses, not in indications or ChannelData.
	if t.pendingN.Load() == 0 || len(b) < 20 || b[0]&0xC0 != 0 || b[0]&0x01 == 0 {
		return nil
	}
	var id [stun.TransactionIDSize]byte
	copy(id[:], b[8:20])
	t.mu.Lock()
	_, ok := t.pending[id]
	t.mu.Unlock()
	if !ok {
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type.Class == stun.ClassRequest || m.Type.Class == stun.ClassIndication {
		return nil
	}
	p := t.takePending(id)
	if p == nil || m.Type.Class != stun.ClassSuccessResponse {
		return nil
	}
	switch p.kind {
	case pendAllocate:
		return t.allocated(m, p)
	case pendPermission:
		if d := t.lookup(p.tuple); d != nil {
			d.permit(p.peers, time.Now())
		}
	case pendRefresh:
		return t.refreshed(m, p)
	}
	return nil
}

// allocated completes pion's Allocate success response m for a request with
// ADDITIONAL-ADDRESS-FAMILY: the IPv6 half is bound (once: a retransmitted
// request finds it) and named, or refused with ADDRESS-ERROR-CODE.
func (t *dualTable) allocated(m *stun.Message, p *pendingReq) []byte {
	s := t.srv
	now := time.Now()
	life := defaultLifetime
	if v, err := m.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
		life = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	var add []stun.Setter
	if p.dual {
		var primary stun.XORMappedAddress
		if primary.GetFromAs(m, stun.AttrXORRelayedAddress) != nil {
			return nil
		}
		d := t.lookup(p.tuple)
		if d == nil {
			var err error
			d, err = t.create(p, primary, life, now)
			if err != nil {
				code := stun.CodeInsufficientCapacity
				if errors.Is(err, ErrNoRelayFamily) {
					code = stun.CodeAddrFamilyNotSupported
				}
				s.log.Debug("dual allocation: no IPv6 half", slog.Any("error", err), slog.String("client", p.ft.src.String()))
				add = append(add, addressError(p.errType, familyIPv6, code))
			}
		}
		if d != nil {
			add = append(add, xorAttr{stun.AttrXORRelayedAddress, d.relayed})
		}
	} else if p.refusedFam != 0 {
		add = append(add, addressError(p.errType, p.refusedFam, stun.CodeAddrFamilyNotSupported))
	}
	if len(add) == 0 {
		return nil
	}
	// The IPv6 XOR-RELAYED-ADDRESS goes right after pion's IPv4 one, as
	// coturn orders them (turnutils_uclient takes the first of the family it
	// wants and prints those before it).
	var relayed6 stun.Setter
	if p.dual && len(add) > 0 {
		if x, ok := add[len(add)-1].(xorAttr); ok {
			relayed6, add = x, add[:len(add)-1]
		}
	}
	out, err := resignEach(m, p.key, func(out *stun.Message, a stun.RawAttribute) error {
		out.Add(a.Type, a.Value)
		if a.Type == stun.AttrXORRelayedAddress && relayed6 != nil {
			err := relayed6.AddTo(out)
			relayed6 = nil
			return err
		}
		return nil
	}, add...)
	if err != nil {
		return nil
	}
	return out
}

// xorAttr is an XOR-RELAYED-ADDRESS or XOR-PEER-ADDRESS setter.
type xorAttr struct {
	typ stun.AttrType
	ap  netip.AddrPort
}

func (x xorAttr) AddTo(m *stun.Message) error {
	a := stun.XORMappedAddress{IP: x.ap.Addr().AsSlice(), Port: int(x.ap.Port())}
	return a.AddToAs(m, x.typ)
}

// create binds the IPv6 half of a dual allocation and registers it.
func (t *dualTable) create(p *pendingReq, primary stun.XORMappedAddress, life time.Duration, now time.Time) (*dualAlloc, error) {
	s := t.srv
	primaryAP, ok := netip.AddrFromSlice(primary.IP)
	if !ok {
		return nil, ErrNoRelayFamily
	}
	v, ok := t.relays.Load(netip.AddrPortFrom(primaryAP.Unmap(), uint16(primary.Port))) //nolint:gosec // a port
	if !ok {
		return nil, errors.New("relay: dual allocation: primary relay socket not found")
	}
	prc := v.(*relayConn)
	sock, adv, err := s.gen.allocateExtra(p.userID, netaddr.IPv6)
	if err != nil {
		return nil, err
	}
	proto := "UDP" // pion names every 5-tuple UDP (its FiveTuple.Protocol)
	d := &dualAlloc{
		t: t, tuple: p.tuple, src: p.ft.src, dst: p.ft.dst, proto: proto,
		userID: p.userID, realm: p.realm, ft: p.ft,
		primary: prc, primaryAddr: net.UDPAddrFromAddrPort(prc.advertise),
		sock: sock, relayed: adv, relayAddr: net.UDPAddrFromAddrPort(adv),
		perms: map[netip.Addr]time.Time{}, chans: map[uint16]dualChan{},
		pionChans: map[uint16]netip.AddrPort{}, pionPerms: map[netip.Addr]struct{}{},
		v4Until: now.Add(life), v6Until: now.Add(life),
		done: make(chan struct{}),
	}
	d.snap.Store(&dualSnap{})
	if !prc.dual.CompareAndSwap(nil, d) {
		_ = sock.Close()
		return nil, errors.New("relay: dual allocation: primary already has an IPv6 half")
	}
	t.allocs.Store(p.tuple, d)
	t.live.Add(1)
	d.fast = s.fwd.AttachRelay(d.src, d.dst, d.relayAddr)
	go d.readPeers()
	d.mu.Lock()
	d.rearmLocked(now)
	d.mu.Unlock()
	s.log.Debug("dual allocation", slog.String("client", p.ft.src.String()), slog.Any("relay4", prc.advertise), slog.Any("relay6", adv), slog.Bool("fast", d.fast))
	return d, nil
}

// addressError is an ADDRESS-ERROR-CODE attribute (RFC 8656 §18.12): the
// family, then the code as in ERROR-CODE, then the reason phrase.
func addressError(typ stun.AttrType, fam byte, code stun.ErrorCode) stun.Setter {
	reason := "Address Family not Supported"
	if code == stun.CodeInsufficientCapacity {
		reason = "Insufficient Capacity"
	}
	v := append([]byte{fam, 0, byte(code / 100), byte(code % 100)}, reason...)
	return rawAttr(typ, v)
}

// rawAttr is a setter adding one attribute as is.
func rawAttr(typ stun.AttrType, v []byte) stun.Setter {
	return attrSetter(func(m *stun.Message) error { m.Add(typ, v); return nil })
}

type attrSetter func(*stun.Message) error

func (f attrSetter) AddTo(m *stun.Message) error { return f(m) }

// resign rebuilds m (same type and transaction) from the attributes before
// its MESSAGE-INTEGRITY that keep accepts (nil: all), then add, signed with
// key; a FINGERPRINT is added back when m had one.
func resign(m *stun.Message, key []byte, keep func(stun.RawAttribute) bool, add ...stun.Setter) ([]byte, error) {
	return resignEach(m, key, func(out *stun.Message, a stun.RawAttribute) error {
		if keep == nil || keep(a) {
			out.Add(a.Type, a.Value)
		}
		return nil
	}, add...)
}

// resignEach is resign with each deciding what each covered attribute
// becomes in out (itself, nothing, or more).
func resignEach(m *stun.Message, key []byte, each func(out *stun.Message, a stun.RawAttribute) error, add ...stun.Setter) ([]byte, error) {
	out := stun.New()
	out.TransactionID = m.TransactionID
	out.Type = m.Type
	out.WriteHeader()
	for _, a := range m.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break // anything after it is not covered
		}
		if a.Type == stun.AttrMessageIntegritySHA256 || a.Type == stun.AttrFingerprint {
			continue
		}
		if err := each(out, a); err != nil {
			return nil, err
		}
	}
	for _, a := range add {
		if err := a.AddTo(out); err != nil {
			return nil, err
		}
	}
	if err := stun.MessageIntegrity(key).AddTo(out); err != nil {
		return nil, err
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.AddTo(out); err != nil {
			return nil, err
		}
	}
	return out.Raw, nil
}

// buildSuccess builds a signed success response to req.
func buildSuccess(req *stun.Message, key []byte, extra ...stun.Setter) []byte {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassSuccessResponse),
	}
	setters = append(setters, extra...)
	setters = append(setters, stun.MessageIntegrity(key))
	m, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	return m.Raw
}

func lifetimeAttr(d time.Duration) stun.Setter {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(d/time.Second)) //nolint:gosec // at most an hour
	return rawAttr(stun.AttrLifetime, v[:])
}

// requestedLifetime is the lifetime pion grants for m (its rules: the
// requested value below an hour, else the default).
func requestedLifetime(m *stun.Message) time.Duration {
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		return defaultLifetime
	}
	if d := time.Duration(binary.BigEndian.Uint32(v)) * time.Second; d < maxLifetime {
		return d
	}
	return defaultLifetime
}

// peerOf decodes one XOR-PEER-ADDRESS attribute a of m; ok is false when
// it is malformed (pion answers 400).
func peerOf(m *stun.Message, a stun.RawAttribute) (netip.AddrPort, bool) {
	var pa stun.XORMappedAddress
	tmp := &stun.Message{TransactionID: m.TransactionID}
	tmp.Add(stun.AttrXORPeerAddress, a.Value)
	if pa.GetFromAs(tmp, stun.AttrXORPeerAddress) != nil {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(pa.IP)
	if !ok || pa.Port < 0 || pa.Port > 0xffff {
		return netip.AddrPort{}, false
	}
	if len(a.Value) >= 2 && a.Value[1] == familyIPv4 {
		ip = ip.Unmap()
	}
	return netip.AddrPortFrom(ip, uint16(pa.Port)), true //nolint:gosec // checked
}

// isV6Peer classifies an XOR-PEER-ADDRESS by its family field: an IPv6
// family goes to the IPv6 relayed address (an IPv4-mapped form included;
// the default peer policy denies those).
func isV6Peer(a stun.RawAttribute) bool { return len(a.Value) >= 2 && a.Value[1] == familyIPv6 }

// createPermission handles an authenticated, policy-checked CreatePermission
// on a dual allocation (RFC 8656 §9.2): IPv6 peers are installed here, IPv4
// peers by pion.
func (t *dualTable) createPermission(msg *stun.Message, ft fiveTuple, key []byte, now time.Time) verdict {
	tu := ft.key()
	d := t.lookup(tu)
	if d == nil {
		return verdict{}
	}
	var v6 []netip.Addr
	n4 := 0
	for _, a := range msg.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		ap, ok := peerOf(msg, a)
		if !ok {
			return verdict{} // pion answers 400
		}
		if isV6Peer(a) {
			v6 = append(v6, ap.Addr())
		} else {
			n4++
		}
	}
	if n4 > 0 && d.v4Retired() {
		return t.reject(msg, stun.CodePeerAddrFamilyMismatch, key)
	}
	switch {
	case len(v6) == 0:
		return verdict{}
	case n4 == 0:
		d.permit(v6, now)
		return verdict{reply: buildSuccess(msg, key)}
	}
	var v4 []stun.RawAttribute
	for _, a := range msg.Attributes {
		if a.Type == stun.AttrMessageIntegrity {
			break
		}
		if a.Type == stun.AttrXORPeerAddress && !isV6Peer(a) {
			v4 = append(v4, a)
		}
	}
	out := t.srv.gate.forward(msg, key, []stun.AttrType{stun.AttrXORPeerAddress}, v4...)
	if out == nil {
		return verdict{}
	}
	t.addPending(msg.TransactionID, &pendingReq{kind: pendPermission, key: key, tuple: tu, peers: v6}, now)
	return verdict{rewrite: out}
}

func (t *dualTable) reject(msg *stun.Message, code stun.ErrorCode, key []byte) verdict {
	t.srv.metrics.drops.gateReject.Inc()
	return verdict{reply: buildError(msg, code, key)}
}

// channelBind handles an authenticated, policy-checked ChannelBind on a dual
// allocation (RFC 8656 §11.2): IPv6 peers here, IPv4 peers by pion; one
// channel number space for both.
func (t *dualTable) channelBind(msg *stun.Message, ft fiveTuple, key []byte, now time.Time) verdict {
	tu := ft.key()
	d := t.lookup(tu)
	if d == nil {
		return verdict{}
	}
	nv, err := msg.Get(stun.AttrChannelNumber)
	if err != nil || len(nv) < 2 {
		return verdict{} // pion answers 400
	}
	num := binary.BigEndian.Uint16(nv)
	var peer netip.AddrPort
	var v6, found, ok bool
	for _, a := range msg.Attributes {
		if a.Type == stun.AttrXORPeerAddress {
			if peer, ok = peerOf(msg, a); !ok {
				return verdict{}
			}
			v6, found = isV6Peer(a), true
			break
		}
	}
	if !found {
		return verdict{}
	}
	if !v6 {
		if d.v4Retired() {
			return t.reject(msg, stun.CodePeerAddrFamilyMismatch, key)
		}
		if d.channelTaken(num) {
			return t.reject(msg, stun.CodeBadRequest, key)
		}
		return verdict{}
	}
	if !d.bind(num, peer, now) {
		return t.reject(msg, stun.CodeBadRequest, key)
	}
	return verdict{reply: buildSuccess(msg, key)}
}

// refresh handles an authenticated Refresh on a dual allocation (RFC 8656
// §7.3): per-family lifetimes, pion's kept at the longer one.
func (t *dualTable) refresh(msg *stun.Message, ft fiveTuple, key []byte, now time.Time) verdict {
	tu := ft.key()
	d := t.lookup(tu)
	if d == nil {
		return verdict{}
	}
	life := requestedLifetime(msg)
	fam := byte(0)
	if v, err := msg.Get(stun.AttrRequestedAddressFamily); err == nil {
		f, ok := familyAttr(v)
		if !ok || f != familyIPv4 && f != familyIPv6 {
			return verdict{} // pion answers 400 or 443
		}
		fam = f
	}
	p := &pendingReq{kind: pendRefresh, key: key, tuple: tu, fam: fam, lifetime: life}
	if fam == 0 {
		if life == 0 {
			return verdict{} // pion deletes the allocation; both halves go
		}
		t.addPending(msg.TransactionID, p, now)
		return verdict{}
	}
	if fam == familyIPv4 && d.v4Retired() {
		return t.reject(msg, stun.CodePeerAddrFamilyMismatch, key)
	}
	if life == 0 {
		if fam == familyIPv6 {
			d.endV6("refresh", true)
		} else {
			d.retireV4("refresh")
		}
		return verdict{reply: buildSuccess(msg, key, lifetimeAttr(0))}
	}
	// pion gets a plain Refresh for the longer of the two lifetimes; the
	// client is answered with its own (refreshed).
	other := d.remaining(fam^3, now)
	var lv [4]byte
	binary.BigEndian.PutUint32(lv[:], uint32(max(life, other)/time.Second)) //nolint:gosec // at most an hour
	out := t.srv.gate.forward(msg, key, []stun.AttrType{stun.AttrRequestedAddressFamily, stun.AttrLifetime},
		stun.RawAttribute{Type: stun.AttrLifetime, Value: lv[:]})
	if out == nil {
		return verdict{}
	}
	t.addPending(msg.TransactionID, p, now)
	return verdict{rewrite: out}
}

// refreshed acts on pion's Refresh success m.
func (t *dualTable) refreshed(m *stun.Message, p *pendingReq) []byte {
	d := t.lookup(p.tuple)
	if d == nil {
		return nil
	}
	now := time.Now()
	d.refreshed(p.fam, p.lifetime, now)
	if p.fam == 0 {
		return nil
	}
	out, err := resign(m, p.key, func(a stun.RawAttribute) bool { return a.Type != stun.AttrLifetime }, lifetimeAttr(p.lifetime))
	if err != nil {
		return nil
	}
	return out
}

// clientData relays a client's ChannelData or Send indication to an IPv6
// peer of a dual allocation on pion's path (the data plane serves UDP
// clients itself). It reports whether it took the datagram.
func (t *dualTable) clientData(b []byte, ft fiveTuple, msg *stun.Message) bool {
	if t.live.Load() == 0 || len(b) < 4 {
		return false
	}
	isCD := b[0]&0xC0 == 0x40
	isSend := !isCD && len(b) >= 20 && b[0] == 0x00 && b[1] == 0x16
	if !isCD && !isSend {
		return false
	}
	d := t.lookup(ft.key())
	if d == nil {
		return false
	}
	snap := d.snap.Load()
	if isCD {
		num, n, ok := channeldata.Parse(b)
		if !ok {
			return false
		}
		peer, bound := snap.peerOf(num)
		if !bound {
			return false // pion's channel, or none
		}
		if n < 0 {
			t.srv.metrics.drops.requestError.Inc()
			return true
		}
		_, _ = d.sock.WriteTo(b[channeldata.HeaderLen:channeldata.HeaderLen+n], net.UDPAddrFromAddrPort(peer))
		return true
	}
	msg.Reset()
	msg.Raw = append(msg.Raw[:0], b...)
	if msg.Decode() != nil {
		return false
	}
	var pa stun.XORMappedAddress
	if pa.GetFromAs(msg, stun.AttrXORPeerAddress) != nil || pa.IP.To4() != nil {
		return false // pion's (IPv4) peer, or malformed
	}
	data, err := msg.Get(stun.AttrData)
	if err != nil {
		return false
	}
	ip, _ := netip.AddrFromSlice(pa.IP)
	if !snap.permitted(ip) {
		t.srv.metrics.drops.requestError.Inc()
		return true
	}
	_, _ = d.sock.WriteTo(data, &net.UDPAddr{IP: pa.IP, Port: pa.Port})
	return true
}

// closeAll ends every IPv6 half (Server.Close: pion closes its allocations
// without deletion events).
func (t *dualTable) closeAll() {
	t.allocs.Range(func(_, v any) bool {
		v.(*dualAlloc).endV6("close", false)
		return true
	})
}

// pionPermission and pionChannel follow pion's (IPv4) permissions and
// channels of dual allocations, from pion's events.
func (t *dualTable) pionPermission(src, dst, relay net.Addr, peer net.IP, add bool) {
	if t.live.Load() == 0 {
		return
	}
	tu := keyOf(src, dst)
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	if d := t.lookup(tu); d != nil && sameAddr(relay, d.primaryAddr) {
		d.mu.Lock()
		if add {
			d.pionPerms[ip.Unmap()] = struct{}{}
		} else {
			delete(d.pionPerms, ip.Unmap())
		}
		d.mu.Unlock()
	}
}

func (t *dualTable) pionChannel(src, dst, relay, peer net.Addr, num uint16, add bool) {
	if t.live.Load() == 0 {
		return
	}
	tu := keyOf(src, dst)
	pap, ok := addrPortOfAddr(peer)
	if !ok {
		return
	}
	if d := t.lookup(tu); d != nil && sameAddr(relay, d.primaryAddr) {
		d.mu.Lock()
		if add {
			d.pionChans[num] = pap
		} else {
			delete(d.pionChans, num)
		}
		d.mu.Unlock()
	}
}

func sameAddr(a, b net.Addr) bool {
	x, ok1 := addrPortOfAddr(a)
	y, ok2 := addrPortOfAddr(b)
	return ok1 && ok2 && x == y
}

// dualAlloc is the IPv6 half of one dual allocation.
type dualAlloc struct {
	t             *dualTable
	tuple         allocKey
	src, dst      net.Addr // the 5-tuple as pion's events name it
	proto         string
	userID, realm string
	ft            fiveTuple // the 5-tuple, and how to reach the client

	primary     *relayConn // pion's (IPv4) relay socket
	primaryAddr net.Addr
	sock        net.PacketConn // the IPv6 relay socket (a *relayConn)
	relayed     netip.AddrPort
	relayAddr   net.Addr
	fast        bool // the data plane relays it (AttachRelay)

	snap atomic.Pointer[dualSnap] // what the per-datagram paths read

	mu        sync.Mutex
	perms     map[netip.Addr]time.Time // IPv6 permissions
	chans     map[uint16]dualChan      // IPv6 channels
	pionChans map[uint16]netip.AddrPort
	pionPerms map[netip.Addr]struct{}
	v4Until   time.Time
	v6Until   time.Time
	retired   bool // the IPv4 half was deleted
	ended     bool
	timer     *time.Timer
	done      chan struct{}
}

type dualChan struct {
	peer  netip.AddrPort
	until time.Time
}

// dualSnap is an immutable copy of the IPv6 half's permissions and channels.
type dualSnap struct {
	perms []netip.Addr
	chans []dualSnapChan
}

type dualSnapChan struct {
	num  uint16
	peer netip.AddrPort
}

func (s *dualSnap) permitted(ip netip.Addr) bool {
	for _, p := range s.perms {
		if p == ip {
			return true
		}
	}
	return false
}

func (s *dualSnap) peerOf(num uint16) (netip.AddrPort, bool) {
	for _, c := range s.chans {
		if c.num == num {
			return c.peer, true
		}
	}
	return netip.AddrPort{}, false
}

func (s *dualSnap) channelOf(peer netip.AddrPort) (uint16, bool) {
	for _, c := range s.chans {
		if c.peer == peer {
			return c.num, true
		}
	}
	return 0, false
}

// planeEvent is a permission or channel change the data plane must learn.
type planeEvent struct {
	relay  net.Addr
	ip     netip.Addr
	peer   netip.AddrPort
	num    uint16
	isChan bool
	add    bool
}

func (d *dualAlloc) publishLocked() {
	s := &dualSnap{}
	for ip := range d.perms {
		s.perms = append(s.perms, ip)
	}
	for n, c := range d.chans {
		s.chans = append(s.chans, dualSnapChan{num: n, peer: c.peer})
	}
	d.snap.Store(s)
}

func (d *dualAlloc) emit(evs []planeEvent) {
	h := d.t.srv.planeEvents
	for _, e := range evs {
		switch {
		case e.isChan && e.add && h.OnChannelCreated != nil:
			h.OnChannelCreated(d.src, d.dst, d.proto, d.userID, d.realm, e.relay, net.UDPAddrFromAddrPort(e.peer), e.num)
		case e.isChan && !e.add && h.OnChannelDeleted != nil:
			h.OnChannelDeleted(d.src, d.dst, d.proto, d.userID, d.realm, e.relay, net.UDPAddrFromAddrPort(e.peer), e.num)
		case !e.isChan && e.add && h.OnPermissionCreated != nil:
			h.OnPermissionCreated(d.src, d.dst, d.proto, d.userID, d.realm, e.relay, e.ip.AsSlice())
		case !e.isChan && !e.add && h.OnPermissionDeleted != nil:
			h.OnPermissionDeleted(d.src, d.dst, d.proto, d.userID, d.realm, e.relay, e.ip.AsSlice())
		}
	}
}

func (d *dualAlloc) v4Retired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.retired
}

// remaining is how long the half of family fam has left (0 if gone).
func (d *dualAlloc) remaining(fam byte, now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	until := d.v6Until
	if fam == familyIPv4 {
		if d.retired {
			return 0
		}
		until = d.v4Until
	}
	// Round up, so pion's whole seconds never fall short.
	return max(until.Sub(now)+time.Second-1, 0).Truncate(time.Second)
}

func (d *dualAlloc) permit(ips []netip.Addr, now time.Time) {
	var evs []planeEvent
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return
	}
	for _, ip := range ips {
		if _, ok := d.perms[ip]; !ok {
			evs = append(evs, planeEvent{relay: d.relayAddr, ip: ip, add: true})
		}
		d.perms[ip] = now.Add(permissionLifetime)
	}
	d.publishLocked()
	d.rearmLocked(now)
	d.mu.Unlock()
	d.emit(evs)
}

// channelTaken reports whether num is bound to an IPv6 peer.
func (d *dualAlloc) channelTaken(num uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.chans[num]
	return ok
}

// bind binds or refreshes channel num to an IPv6 peer (and its
// permission); false when the number or the peer is bound otherwise.
func (d *dualAlloc) bind(num uint16, peer netip.AddrPort, now time.Time) bool {
	var evs []planeEvent
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return false
	}
	if _, ok := d.pionChans[num]; ok {
		d.mu.Unlock()
		return false
	}
	if c, ok := d.chans[num]; ok && c.peer != peer {
		d.mu.Unlock()
		return false
	}
	for n, c := range d.chans {
		if c.peer == peer && n != num {
			d.mu.Unlock()
			return false
		}
	}
	if _, ok := d.chans[num]; !ok {
		evs = append(evs, planeEvent{relay: d.relayAddr, peer: peer, num: num, isChan: true, add: true})
	}
	d.chans[num] = dualChan{peer: peer, until: now.Add(channelLifetime)}
	if _, ok := d.perms[peer.Addr()]; !ok {
		evs = append(evs, planeEvent{relay: d.relayAddr, ip: peer.Addr(), add: true})
	}
	d.perms[peer.Addr()] = now.Add(permissionLifetime)
	d.publishLocked()
	d.rearmLocked(now)
	d.mu.Unlock()
	// The plane needs the permission before the channel to relay at once.
	for i := len(evs) - 1; i >= 0; i-- {
		d.emit(evs[i : i+1])
	}
	return true
}

// refreshed applies a Refresh pion answered: fam 0 refreshes both halves.
func (d *dualAlloc) refreshed(fam byte, life time.Duration, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if fam != familyIPv6 && !d.retired {
		d.v4Until = now.Add(life)
	}
	if fam != familyIPv4 {
		d.v6Until = now.Add(life)
	}
	d.rearmLocked(now)
}

// rearmLocked sets the timer to the next expiry.
func (d *dualAlloc) rearmLocked(now time.Time) {
	if d.ended {
		return
	}
	next := d.v6Until
	if !d.retired && d.v4Until.Before(next) {
		next = d.v4Until
	}
	for _, u := range d.perms {
		if u.Before(next) {
			next = u
		}
	}
	for _, c := range d.chans {
		if c.until.Before(next) {
			next = c.until
		}
	}
	wait := max(next.Sub(now), 0) + 10*time.Millisecond
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.expire)
	} else {
		d.timer.Reset(wait)
	}
}

// expire removes what has expired: permissions, channels, a half.
func (d *dualAlloc) expire() {
	now := time.Now()
	var evs []planeEvent
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return
	}
	for ip, u := range d.perms {
		if !now.Before(u) {
			delete(d.perms, ip)
			evs = append(evs, planeEvent{relay: d.relayAddr, ip: ip})
		}
	}
	for n, c := range d.chans {
		if !now.Before(c.until) {
			delete(d.chans, n)
			evs = append(evs, planeEvent{relay: d.relayAddr, peer: c.peer, num: n, isChan: true})
		}
	}
	v6Done := !now.Before(d.v6Until)
	v4Done := !d.retired && !now.Before(d.v4Until)
	d.publishLocked()
	d.rearmLocked(now)
	d.mu.Unlock()
	d.emit(evs)
	if v4Done && !v6Done {
		d.retireV4("lifetime")
	}
	if v6Done {
		d.endV6("lifetime", true)
	}
}

// retireV4 ends the IPv4 half while the IPv6 half lives on: its socket
// relays nothing more (pion's path drops, the data plane forgets its
// permissions) and requests for it are answered 443.
func (d *dualAlloc) retireV4(why string) {
	var evs []planeEvent
	d.mu.Lock()
	if d.retired || d.ended {
		d.mu.Unlock()
		return
	}
	d.retired = true
	for ip := range d.pionPerms {
		evs = append(evs, planeEvent{relay: d.primaryAddr, ip: ip})
	}
	d.pionChans = map[uint16]netip.AddrPort{}
	d.rearmLocked(time.Now())
	d.mu.Unlock()
	d.primary.retired.Store(true)
	d.emit(evs)
	d.t.srv.log.Debug("dual allocation: IPv4 half deleted", slog.String("client", d.src.String()), slog.String("why", why))
}

// endV6 closes the IPv6 half; the allocation goes on as an IPv4 one, or,
// when the IPv4 half was already deleted and endAll is set, ends (pion
// deletes it when its relay socket fails).
func (d *dualAlloc) endV6(why string, endAll bool) {
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return
	}
	d.ended = true
	retired := d.retired
	if d.timer != nil {
		d.timer.Stop()
	}
	d.perms, d.chans = map[netip.Addr]time.Time{}, map[uint16]dualChan{}
	d.publishLocked()
	d.mu.Unlock()
	if d.t.allocs.CompareAndDelete(d.tuple, d) {
		d.t.live.Add(-1)
	}
	d.primary.dual.CompareAndSwap(d, nil)
	_ = d.sock.Close() // the data plane detaches it; the reader ends
	<-d.done
	d.t.srv.log.Debug("dual allocation: IPv6 half deleted", slog.String("client", d.src.String()), slog.String("why", why))
	if retired && endAll {
		d.primary.kill()
	}
}

// readPeers relays what the data plane does not (pion's path): datagrams
// from permitted IPv6 peers to the client, as ChannelData on a bound
// channel, else as Data indications (RFC 8656 §11.6, §12.6).
func (d *dualAlloc) readPeers() {
	defer close(d.done)
	const head = channeldata.HeaderLen
	buf := make([]byte, head+65536+3)
	stream := d.ft.conn != nil
	drops := &d.t.srv.metrics.drops
	for {
		n, from, err := d.sock.ReadFrom(buf[head : len(buf)-3])
		if err != nil {
			return
		}
		peer, ok := addrPortOfAddr(from)
		if !ok {
			continue
		}
		snap := d.snap.Load()
		if !snap.permitted(peer.Addr()) {
			drops.noPermission.Inc()
			continue
		}
		var out []byte
		if num, bound := snap.channelOf(peer); bound {
			channeldata.PutHeader(buf, num, n)
			size := head + n
			if stream {
				// RFC 8656 §12.5: padded to a multiple of 4 over TCP/TLS.
				for size%4 != 0 {
					buf[size] = 0
					size++
				}
			}
			out = buf[:size]
		} else {
			m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
				xorAttr{stun.AttrXORPeerAddress, peer}, rawAttr(stun.AttrData, buf[head:head+n]))
			if err != nil {
				continue
			}
			out = m.Raw
		}
		if writeClient(d.ft, out) != nil {
			drops.sendError.Inc()
		}
	}
}

// allocateExtra binds the relay socket of a dual allocation's additional
// family f. It takes a port (counting toward max_allocations, which bounds
// ports) but no user quota: the allocation was admitted once.
func (g *addrGenerator) allocateExtra(userID string, f netaddr.Family) (net.PacketConn, netip.AddrPort, error) {
	s := g.srv
	if s.draining.Load() {
		return nil, netip.AddrPort{}, ErrDraining
	}
	rip, ok := g.pick(f)
	if !ok {
		return nil, netip.AddrPort{}, ErrNoRelayFamily
	}
	rip, conn, port, err := g.bindFamily(rip, time.Now(), s.limits.Load().maxAllocations)
	if err != nil {
		return nil, netip.AddrPort{}, g.bindFailed(err)
	}
	info := relayInfo{
		family:    f,
		bind:      netip.AddrPortFrom(rip.bind, uint16(port)),      //nolint:gosec // pool range
		advertise: netip.AddrPortFrom(rip.advertise, uint16(port)), //nolint:gosec // pool range
		userID:    userID,
	}
	rc := s.newRelayConn(conn, info, func() { g.pool.release(rip.bind, port) })
	return rc, info.advertise, nil
}
