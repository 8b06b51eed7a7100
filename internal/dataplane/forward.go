package dataplane

// The spine of the data plane: a datagram's whole walk through a worker.
// Besides this file it reads only table.go (which allocation, channel and
// permission) and wire.go (Send/Data indications); the socket calls are
// internal/udpbatch, the ChannelData header internal/channeldata.
//
// Client to peer (serveListener):
//
//  1. The client's datagram reaches the listener socket owned by worker k
//     (SO_REUSEPORT keeps a client on one socket); the worker's poll
//     reports it (loop.go).
//  2. One recvmmsg reads up to IdealBatchSize datagrams into the worker's
//     slots, listenerReadOffset bytes in, leaving room for raw headers;
//     sources decode straight into netip.AddrPort.
//  3. clientDatagram classifies each: ChannelData (RFC 8656 section 12.4)
//     gives the channel number, a Send indication (wire.go) the peer; the
//     sharded copy-on-write table maps (listener, client) to the
//     allocation, whose immutable state gives the channel's peer, and the
//     peer's IP must hold a permission. Anything else (STUN requests) is
//     copied to the listener's slow-path queue for pion's ReadFrom.
//  4. The allocation's token bucket enforces the bandwidth quota; the
//     datagram is counted (per-allocation atomics, per-core counters).
//  5. sendRaw writes IP and UDP headers in front of the application data
//     in place and queues it on the worker's raw socket (many allocations
//     per sendmmsg); without one, the slot is rewritten (buffer = data,
//     address = peer) and consecutive slots for one relay socket share a
//     sendmmsg on it.
//
// Peer to client (serveRelay):
//
//  1. The peer's datagram reaches an allocation's relay socket; the owning
//     worker's poll returns it, usually with many other ready relay sockets.
//  2. recvmmsg (up to RelayReadBatch) writes it 4 bytes into a slot of the
//     worker's batch toward the allocation's listener address, leaving room
//     for the ChannelData header.
//  3. The relay socket points at its allocation; the peer must hold a
//     permission (else dropped and counted), then the quota is charged.
//  4. A bound channel gets the ChannelData header written in front (no
//     padding over UDP); a permitted peer without a channel gets a Data
//     indication built around the data in the same slot (wire.go).
//  5. After every ready socket is read (end), each batch leaves in one
//     sendmmsg on the worker's own listener socket for that address: one
//     syscall for many allocations.

import (
	"net/netip"

	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

// worker is one per-core forwarding loop. Everything here runs on the
// worker's own goroutine; nothing in it is shared with other workers except
// the published counters and the read-only table snapshots.
type worker struct {
	id    int
	p     *Plane
	rx    *udpbatch.Msgs   // client datagrams read from a listener
	tx    []*udpbatch.Msgs // ChannelData toward clients, per listener address
	txN   []int            // pending datagrams in tx
	ctr   counters
	stats *coreStats
	now   int64
	snap  *listenerSnap

	ind *indications // STUN scratch for Send/Data indications
	// more records, during a wake-up, that some socket read filled its
	// batch and may hold more.
	more bool
	// lnBudget and rlyBudget are what is left of this round's RoundBudget
	// for the listeners and for the relay sockets.
	lnBudget, rlyBudget int

	// raw are the client-to-peer raw senders by family (0 IPv4, 1 IPv6);
	// nil where unavailable.
	raw [2]*rawQueue

	loopState // epoll set and commands (loop.go)
}

func newWorker(p *Plane, id int) *worker {
	w := &worker{id: id, p: p, rx: udpbatch.NewMsgs(IdealBatchSize, SlotSize, 0), stats: new(coreStats), ind: newIndications()}
	w.initLoop()
	return w
}

// begin starts one wake-up: one clock reading and one listener snapshot for
// the whole batch.
func (w *worker) begin() {
	w.now = w.p.now()
	w.snap = w.p.lsnap.Load()
	w.lnBudget, w.rlyBudget = RoundBudget, RoundBudget
	w.ctr[ctrWakeups]++
}

// end finishes a wake-up: ChannelData queued toward clients goes out in one
// sendmmsg per listener socket, and the tallies are published.
func (w *worker) end() {
	for idx := range w.txN {
		if w.txN[idx] > 0 {
			w.flush(idx)
		}
	}
	w.stats.publish(&w.ctr)
	w.snap = nil
}

func (w *worker) drop(r DropReason, n int) { w.ctr[ctrDrops+int(r)] += uint64(n) }

func (w *worker) count(dir, fam, bytes int) {
	w.ctr[ctrPackets+dir*4+fam]++
	w.ctr[ctrBytes+dir*4+fam] += uint64(bytes)
}

// serveListener reads client datagrams from l (batches while they come
// back full, within the round's budget) and relays the ChannelData on
// bound, permitted channels, and the Send indications to permitted peers,
// to their peers; everything else (STUN requests) goes to pion.
//
// Client to peer: recvmmsg fills rx; for each ChannelData the (listener,
// client) key finds the allocation, the channel number its peer; the slot
// is rewritten in place to carry the bare application data to the peer, and
// runs of slots for the same relay socket leave in one sendmmsg.
func (w *worker) serveListener(l *Conn) {
	for w.lnBudget > 0 {
		n, full := w.serveListenerBatch(l)
		w.lnBudget -= n
		if !full {
			return
		}
	}
	w.more = true // budget spent, batches still full: the next round reads on
}

// serveListenerBatch is one batch of serveListener; it returns how many
// datagrams it read and whether the batch came back full.
func (w *worker) serveListenerBatch(l *Conn) (n int, full bool) {
	ms := w.rx
	for i := range ms.M {
		ms.M[i].Buf = ms.M[i].Mem[listenerReadOffset:]
	}
	n, err := l.b.ReadBatch(ms, 0, len(ms.M))
	w.ctr[ctrReadCalls]++
	if err != nil {
		w.ctr[ctrReadErrors]++
		return 0, false
	}
	full = n == len(ms.M)
	var runRelay *Conn
	runLo, k := 0, 0
	for i := 0; i < n; i++ {
		m := &ms.M[i]
		if m.Trunc {
			w.drop(DropOversized, 1)
			continue
		}
		a, payload, peer, ind, ok := w.clientDatagram(l, m)
		if !ok {
			continue
		}
		d := &a.dir[ClientToPeer]
		if !a.quota.allow(w.now, len(payload), a.limit) {
			w.drop(DropBandwidth, 1)
			continue
		}
		if ind {
			w.ctr[ctrIndications+ClientToPeer]++
		}
		rc, fam := a.relayFor(peer)
		d.packets.Add(1)
		d.bytes.Add(uint64(len(payload)))
		w.count(ClientToPeer, fam, len(payload))

		tos := w.p.markFor(m)
		if w.sendRaw(rc, m, payload, peer, tos) {
			continue
		}
		m.Buf = payload
		m.Addr = peer
		if uint32(tos) != rc.tos.Load() {
			// The marking applies to the socket: what is queued for it
			// goes out first with the old one.
			if rc == runRelay && k > runLo {
				w.write(runRelay, ms, runLo, k)
				runLo = k
			}
			rc.setMark(tos)
		}
		if rc != runRelay {
			if k > runLo {
				w.write(runRelay, ms, runLo, k)
			}
			runRelay, runLo = rc, k
		}
		if k != i {
			ms.M[k], ms.M[i] = ms.M[i], ms.M[k]
		}
		k++
	}
	w.flushRaws()
	if k > runLo {
		w.write(runRelay, ms, runLo, k)
	}
	return n, full
}

// clientDatagram classifies one client datagram. For ChannelData on a bound,
// permitted channel and for a Send indication (ind) to a permitted peer it
// returns the allocation, the application data (inside the slot) and the
// peer; otherwise it has already dropped and counted the datagram or handed
// it to pion, and ok is false.
func (w *worker) clientDatagram(l *Conn, m *udpbatch.Message) (a *alloc, payload []byte, peer netip.AddrPort, ind, ok bool) {
	data := m.Buf[:m.N]
	num, size, isCD := channeldata.Parse(data)
	indication := !isCD && isSendIndication(data)
	if !isCD && !indication {
		w.toPion(l, data, m.Addr, kindListener)
		return nil, nil, peer, false, false
	}
	if isCD && size < 0 {
		w.drop(DropMalformed, 1)
		return nil, nil, peer, false, false
	}
	a = w.p.table.lookup(clientKey{listener: l.lidx, client: m.Addr})
	if a == nil {
		w.drop(DropNoAllocation, 1)
		return nil, nil, peer, false, false
	}
	st := a.state.Load()
	if isCD {
		if peer, ok = st.peerOf(num); !ok {
			w.drop(DropNoChannel, 1)
			return nil, nil, peer, false, false
		}
		payload = data[channeldata.HeaderLen : channeldata.HeaderLen+size]
	} else {
		if peer, payload, ok = w.ind.parseSend(data); !ok || w.p.isPionPeer(peer.Addr()) {
			w.toPion(l, data, m.Addr, kindListener)
			return nil, nil, peer, false, false
		}
	}
	if !st.permitted(peer.Addr()) {
		w.drop(DropToUnpermittedPeer, 1)
		return nil, nil, peer, false, false
	}
	return a, payload, peer, indication, true
}

// toPion queues a datagram for pion's reader of c, or counts the drop.
func (w *worker) toPion(c *Conn, data []byte, from netip.AddrPort, kind int) {
	if c.enqueue(data, from) {
		w.ctr[ctrSlow+kind]++
	} else {
		w.drop(DropQueueFull, 1)
	}
}

// write writes ms.M[lo:hi] on c and counts what the kernel refused.
func (w *worker) write(c *Conn, ms *udpbatch.Msgs, lo, hi int) {
	sent, _ := c.b.WriteBatch(ms, lo, hi)
	w.ctr[ctrWriteCalls]++
	if sent < hi-lo {
		w.drop(DropSendError, hi-lo-sent)
	}
}

// serveRelay reads the datagrams waiting on one relay socket.
//
// Peer to client: recvmmsg writes each datagram 4 bytes into a slot of the
// batch toward the allocation's listener address, leaving room for the
// ChannelData header; a bound, permitted peer gets the header written in
// front and the slot stays queued for the client; the whole queue leaves in
// one sendmmsg at the end of the wake-up, across allocations.
func (w *worker) serveRelay(r *Conn) {
	if w.rlyBudget <= 0 {
		w.more = true // still ready: the next round serves it
		return
	}
	a := r.alloc.Load()
	if a == nil || !a.fast {
		w.relayToPion(r)
		return
	}
	idx := int(a.key.listener)
	tx := w.txFor(idx)
	k := w.txN[idx]
	if k+RelayReadBatch > len(tx.M) {
		w.flush(idx)
		k = 0
	}
	hi := k + RelayReadBatch
	for i := k; i < hi; i++ {
		tx.M[i].Buf = tx.M[i].Mem[channeldata.HeaderLen:]
	}
	n, err := r.b.ReadBatch(tx, k, hi)
	w.ctr[ctrReadCalls]++
	if err != nil {
		w.ctr[ctrReadErrors]++
		return
	}
	w.rlyBudget -= n
	if n == hi-k {
		w.more = true
	}
	st := a.state.Load()
	d := &a.dir[PeerToClient]
	fam := a.famOf(r)
	end := k + n
	for i := k; i < end; i++ {
		m := &tx.M[i]
		if m.Trunc {
			w.drop(DropOversized, 1)
			continue
		}
		if !st.permitted(m.Addr.Addr()) {
			w.drop(DropNoPermission, 1)
			w.ctr[ctrUnpermPkts+fam]++
			w.ctr[ctrUnpermBytes+fam] += uint64(m.N)
			continue
		}
		if !a.quota.allow(w.now, m.N, a.limit) {
			w.drop(DropBandwidth, 1)
			continue
		}
		if num, bound := st.channelOf(m.Addr); bound {
			channeldata.PutHeader(m.Mem, num, m.N)
			m.Buf = m.Mem[:channeldata.HeaderLen+m.N]
		} else if ind, ok := w.ind.buildData(m.Mem, m.N, m.Addr); ok {
			// Permitted, no channel: a Data indication (RFC 8656 11.6).
			m.Buf = ind
			w.ctr[ctrIndications+PeerToClient]++
		} else {
			w.toPion(r, m.Mem[channeldata.HeaderLen:channeldata.HeaderLen+m.N], m.Addr, kindRelay)
			continue
		}
		d.packets.Add(1)
		d.bytes.Add(uint64(m.N))
		w.count(PeerToClient, fam, m.N)
		m.Addr = a.key.client
		m.TOS = w.p.markFor(m) // the peer's marking, to the client (tos.go)
		if k != i {
			tx.M[k], tx.M[i] = tx.M[i], tx.M[k]
		}
		k++
	}
	w.txN[idx] = k
}

// relayToPion hands every datagram of a relay socket the fast path does not
// serve (no allocation yet, or a TCP client) to pion's reader.
func (w *worker) relayToPion(r *Conn) {
	ms := w.rx
	for i := range RelayReadBatch {
		ms.M[i].Buf = ms.M[i].Mem
	}
	n, err := r.b.ReadBatch(ms, 0, RelayReadBatch)
	w.ctr[ctrReadCalls]++
	if err != nil {
		w.ctr[ctrReadErrors]++
		return
	}
	w.rlyBudget -= n
	if n == RelayReadBatch {
		w.more = true
	}
	for i := range n {
		m := &ms.M[i]
		if m.Trunc {
			w.drop(DropOversized, 1)
			continue
		}
		w.toPion(r, m.Mem[:m.N], m.Addr, kindRelay)
	}
}

// txFor returns the worker's batch toward listener address idx.
func (w *worker) txFor(idx int) *udpbatch.Msgs {
	for len(w.tx) <= idx {
		w.tx = append(w.tx, udpbatch.NewMsgs(IdealBatchSize, SlotSize, 0))
		w.txN = append(w.txN, 0)
	}
	return w.tx[idx]
}

// flush sends the ChannelData queued toward listener address idx from this
// worker's own socket for that address.
func (w *worker) flush(idx int) {
	n := w.txN[idx]
	w.txN[idx] = 0
	var l *Conn
	if snap := w.snap; snap != nil && idx < len(snap.send) && snap.send[idx] != nil {
		l = snap.send[idx][w.id%len(snap.send[idx])]
	}
	if l == nil {
		w.drop(DropNoListener, n)
		return
	}
	w.write(l, w.tx[idx], 0, n)
}

// rawQueue is one worker's raw sender of one family, with what each queued
// datagram needs should the raw socket refuse it (EMSGSIZE: it needs
// fragmenting, which the allocation's UDP socket does): its relay socket,
// the application data and the peer. Each allocation keeps its own bound
// UDP socket, so its port stays reserved; only the send leaves here.
type rawQueue struct {
	s       *udpbatch.RawSender
	relay   [IdealBatchSize]*Conn
	payload [IdealBatchSize][]byte
	peer    [IdealBatchSize]netip.AddrPort
	tos     [IdealBatchSize]uint8
	refused func(i int, tooBig bool) // bound once: no closure per flush
}

// sendRaw queues m's application data (payload, inside m's slot) for peer
// on the worker's raw sender, writing the IP and UDP headers in front of
// it. It returns false when the datagram must leave on relay's own socket:
// no raw socket, a socket bound to a wildcard address, or no headroom.
func (w *worker) sendRaw(relay *Conn, m *udpbatch.Message, payload []byte, peer netip.AddrPort, tos uint8) bool {
	src := relay.local
	sa := src.Addr()
	var q *rawQueue
	switch {
	case sa.Is4() && peer.Addr().Is4():
		q = w.raw[0]
	case sa.Is6() && !sa.Is4In6() && peer.Addr().Is6() && !peer.Addr().Is4In6():
		q = w.raw[1]
	}
	if q == nil || relay.fd < 0 || sa.IsUnspecified() || relay.v6 != sa.Is6() {
		return false
	}
	off := cap(m.Mem) - cap(payload) // payload's offset in its slot
	hl := udpbatch.RawHeaderLen(sa)
	if off < hl || off+len(payload) > len(m.Mem) || len(payload) > 0 && &m.Mem[off] != &payload[0] {
		return false // not inside the slot after all, or no room for the headers
	}
	if q.s.Len() == q.s.Cap() {
		w.flushRaw(q)
	}
	pkt := m.Mem[off-hl : off+len(payload)]
	ttl := w.p.ttl4
	if sa.Is6() {
		ttl = w.p.hop6
	}
	udpbatch.PutRawHeaders(pkt, src, peer, tos, ttl)
	i := q.s.Queue(pkt, sa, peer.Addr())
	q.relay[i], q.payload[i], q.peer[i], q.tos[i] = relay, payload, peer, tos
	return true
}

// flushRaws sends what the raw senders hold; it runs before the slots they
// point into are reused.
func (w *worker) flushRaws() {
	for _, q := range w.raw {
		if q != nil && q.s.Len() > 0 {
			w.flushRaw(q)
		}
	}
}

// flushRaw sends q's datagrams in one sendmmsg (more only after a refusal).
// A datagram too big for the path goes out on its allocation's own socket,
// which fragments it; other refusals are dropped and counted.
func (w *worker) flushRaw(q *rawQueue) {
	n := q.s.Len()
	w.ctr[ctrRawWrites] += uint64(q.s.Flush(q.refused))
	for i := range n {
		q.relay[i], q.payload[i] = nil, nil
	}
}

// rawRefused is rawQueue.refused: the fallback of one refused datagram.
func (w *worker) rawRefused(q *rawQueue, i int, tooBig bool) {
	if tooBig {
		q.relay[i].setMark(q.tos[i])
	}
	if tooBig && udpbatch.WriteTo(q.relay[i].fd, q.payload[i], q.peer[i], q.relay[i].v6, true) == nil {
		return
	}
	w.drop(DropSendError, 1)
}
