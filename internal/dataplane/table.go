package dataplane

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Directions of relayed traffic.
const (
	// ClientToPeer is ChannelData from a client, relayed as UDP to a peer.
	ClientToPeer = 0
	// PeerToClient is UDP from a peer, relayed as ChannelData to a client.
	PeerToClient = 1
	numDirs      = 2
)

// cacheLine is the assumed size of a cache line; per-core and per-direction
// counters are padded to it so that two cores never write the same line.
const cacheLine = 64

// clientKey finds an allocation from a client datagram: the listener address
// it reached (as an index into the plane's listener addresses) and the
// client's transport address. Together with UDP this is the allocation's
// 5-tuple (RFC 8656 section 2.2).
type clientKey struct {
	listener uint16
	client   netip.AddrPort
}

// channel is one channel binding of an allocation.
type channel struct {
	num  uint16
	peer netip.AddrPort
}

// allocState is the part of an allocation the control plane changes:
// bound channels and permitted peer addresses. It is immutable once
// published; a change publishes a modified copy (a handful of entries).
type allocState struct {
	channels []channel
	// perms is a set, so the per-datagram lookup is a hash, not a scan of
	// up to thousands of permissions.
	perms map[netip.Addr]struct{}
}

// peerOf returns the peer bound to channel num.
func (s *allocState) peerOf(num uint16) (netip.AddrPort, bool) {
	for i := range s.channels {
		if s.channels[i].num == num {
			return s.channels[i].peer, true
		}
	}
	return netip.AddrPort{}, false
}

// channelOf returns the channel bound to peer.
func (s *allocState) channelOf(peer netip.AddrPort) (uint16, bool) {
	for i := range s.channels {
		if s.channels[i].peer == peer {
			return s.channels[i].num, true
		}
	}
	return 0, false
}

// permitted reports whether a permission for ip is installed (RFC 8656
// section 9: permissions are per IP address, the port is not checked).
func (s *allocState) permitted(ip netip.Addr) bool {
	_, ok := s.perms[ip]
	return ok
}

// dirCounters are one direction of one allocation, on their own cache line
// (the two directions are usually served by different cores).
type dirCounters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [cacheLine - 16]byte
}

// alloc is the data plane's view of one pion allocation.
type alloc struct {
	ctl   ctlKey
	key   clientKey
	relay *Conn
	// extra is the relay socket of the other address family in an RFC 8656
	// dual allocation (Plane.AttachRelay), nil otherwise: datagrams to peers
	// of its family leave on it, and its peers' datagrams reach the client
	// like those of relay. Permissions and channels are shared (one
	// allocation, one channel number space).
	extra atomic.Pointer[Conn]
	// fast is true when the client reaches us over UDP through an adopted
	// listener: then both directions of bound channels are forwarded here.
	// Otherwise (TCP/TLS clients) every datagram goes to pion.
	fast bool
	// fam indexes per-core counters: client family * 2 + relay family.
	fam int
	// limit is the bandwidth quota in bytes per second, fixed when the
	// allocation is created (0: unlimited).
	limit int64
	state atomic.Pointer[allocState]
	// suspended are permissions pion holds that the plane's peer filter
	// refuses (Plane.SetPeerFilter); guarded by the plane's control mutex.
	suspended []netip.Addr
	dir       [numDirs]dirCounters
	quota     bucket
}

// relayFor returns the relay socket that sends to peer, and the per-core
// counter index (client family * 2 + relay family) of that datagram.
func (a *alloc) relayFor(peer netip.AddrPort) (*Conn, int) {
	if x := a.extra.Load(); x != nil && peer.Addr().Is4() == a.relay.v6 {
		return x, a.fam ^ 1
	}
	return a.relay, a.fam
}

// famOf is the counter index of a datagram read from relay socket r.
func (a *alloc) famOf(r *Conn) int {
	if r != a.relay {
		return a.fam ^ 1
	}
	return a.fam
}

// update publishes a modified copy of the allocation's state. Callers hold
// the plane's control mutex, so updates never race each other.
func (a *alloc) update(f func(s *allocState)) {
	old := a.state.Load()
	s := &allocState{channels: slices.Clone(old.channels), perms: maps.Clone(old.perms)}
	if s.perms == nil {
		s.perms = map[netip.Addr]struct{}{}
	}
	f(s)
	a.state.Store(s)
}

// tableShards is the number of independently copied shards of the client
// table. A control-plane change copies one shard (about n/tableShards
// entries), so allocation churn stays cheap at tens of thousands of
// allocations while readers never lock.
const tableShards = 256

// allocTable maps clientKey to allocation. Readers (workers, every packet)
// load one shard's map through an atomic pointer; writers (pion's event
// callbacks) copy that shard under mu and publish the copy.
type allocTable struct {
	mu     sync.Mutex
	shards [tableShards]atomic.Pointer[map[clientKey]*alloc]
}

func shardOf(k clientKey) int {
	a := k.client.Addr().As16()
	return int((k.client.Port() ^ uint16(a[15]) ^ uint16(a[14])<<8 ^ k.listener) % tableShards)
}

func (t *allocTable) lookup(k clientKey) *alloc {
	m := t.shards[shardOf(k)].Load()
	if m == nil {
		return nil
	}
	return (*m)[k]
}

func (t *allocTable) store(k clientKey, a *alloc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.storeLocked(k, a)
}

func (t *allocTable) storeLocked(k clientKey, a *alloc) {
	sh := &t.shards[shardOf(k)]
	var m map[clientKey]*alloc
	if old := sh.Load(); old != nil {
		m = make(map[clientKey]*alloc, len(*old)+1)
		for kk, v := range *old {
			m[kk] = v
		}
	} else {
		m = make(map[clientKey]*alloc, 1)
	}
	if a == nil {
		delete(m, k)
	} else {
		m[k] = a
	}
	sh.Store(&m)
}

// deleteIf removes k only while it still maps to a (a newer allocation on
// the same 5-tuple stays).
func (t *allocTable) deleteIf(k clientKey, a *alloc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lookup(k) == a {
		t.storeLocked(k, nil)
	}
}

// famIndex is 0 for IPv4 and 1 for IPv6.
func famIndex(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

// isPionPeer reports whether ip is one of SetPionPeers' addresses.
func (p *Plane) isPionPeer(ip netip.Addr) bool {
	l := p.pionPeers.Load()
	if l == nil {
		return false
	}
	return slices.Contains(*l, ip.Unmap())
}

const (
	// minQuotaBurst is the smallest burst a bucket allows, in bytes, at any
	// rate (the relay's own limiter uses the same floor): a client may send
	// this much at once after a quiet period.
	minQuotaBurst = 65536
	// maxQuotaRate bounds a configured rate (bytes per second) so that the
	// cost arithmetic never overflows.
	maxQuotaRate = 1 << 40
)

// bucket is one allocation's bandwidth limit, for both directions together
// (the relay's allocation_bandwidth semantics), as a GCRA token bucket: the
// whole state is the theoretical arrival time of the next byte, one int64
// updated by compare-and-swap. The two workers that may serve one
// allocation's two directions never lock, never lose an update, and no
// rounding accumulates between packets.
type bucket struct {
	tat atomic.Int64 // monotonic ns at which the bucket is empty again
}

// tolerance is how far ahead of now the bucket may run, in ns: one second
// of traffic, or minQuotaBurst bytes at low rates.
func tolerance(rate int64) int64 {
	if rate >= minQuotaBurst {
		return 1e9
	}
	return minQuotaBurst * 1e9 / rate
}

// reset fills the bucket at time now.
func (b *bucket) reset(now int64) { b.tat.Store(now) }

// allow charges n bytes at rate bytes per second and reports whether the
// datagram may pass. rate <= 0 means unlimited.
func (b *bucket) allow(now int64, n int, rate int64) bool {
	if rate <= 0 {
		return true
	}
	cost := int64(n) * 1e9 / rate
	tol := tolerance(rate)
	for {
		tat := b.tat.Load()
		next := max(tat, now) + cost
		if next-now > tol {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
