package dataplane

import "net/netip"

// worker is one per-core forwarding loop. Everything here runs on the
// worker's own goroutine; nothing in it is shared with other workers except
// the published counters and the read-only table snapshots.
type worker struct {
	id    int
	p     *Plane
	rx    *Msgs   // client datagrams read from a listener
	tx    []*Msgs // ChannelData toward clients, per listener address
	txN   []int   // pending datagrams in tx
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

	epollState // platform part: epoll set, wake-up descriptor, commands
}

func newWorker(p *Plane, id int) *worker {
	w := &worker{id: id, p: p, rx: NewMsgs(IdealBatchSize), stats: new(coreStats), ind: newIndications()}
	w.initEpollState()
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
		ms.M[i].Buf = ms.M[i].mem[listenerReadOffset:]
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
			w.drop(DropTruncated, 1)
			continue
		}
		a, payload, peer, ind, ok := w.clientDatagram(l, m)
		if !ok {
			continue
		}
		d := &a.dir[ClientToPeer]
		if !a.quota.allow(w.now, len(payload), a.limit) {
			w.drop(DropQuota, 1)
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
func (w *worker) clientDatagram(l *Conn, m *Message) (a *alloc, payload []byte, peer netip.AddrPort, ind, ok bool) {
	data := m.Buf[:m.N]
	num, size, isCD := ParseChannelData(data)
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
		payload = data[ChannelDataHeaderLen : ChannelDataHeaderLen+size]
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
func (w *worker) write(c *Conn, ms *Msgs, lo, hi int) {
	sent, _ := c.b.WriteBatch(ms, lo, hi)
	w.ctr[ctrWriteCalls]++
	if sent < hi-lo {
		w.drop(DropSend, hi-lo-sent)
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
		tx.M[i].Buf = tx.M[i].mem[ChannelDataHeaderLen:]
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
			w.drop(DropTruncated, 1)
			continue
		}
		if !st.permitted(m.Addr.Addr()) {
			w.drop(DropNoPermission, 1)
			w.ctr[ctrUnpermPkts+fam]++
			w.ctr[ctrUnpermBytes+fam] += uint64(m.N)
			continue
		}
		if !a.quota.allow(w.now, m.N, a.limit) {
			w.drop(DropQuota, 1)
			continue
		}
		if num, bound := st.channelOf(m.Addr); bound {
			PutChannelDataHeader(m.mem, num, m.N)
			m.Buf = m.mem[:ChannelDataHeaderLen+m.N]
		} else if ind, ok := w.ind.buildData(m.mem, m.N, m.Addr); ok {
			// Permitted, no channel: a Data indication (RFC 8656 11.6).
			m.Buf = ind
			w.ctr[ctrIndications+PeerToClient]++
		} else {
			w.toPion(r, m.mem[ChannelDataHeaderLen:ChannelDataHeaderLen+m.N], m.Addr, kindRelay)
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
		ms.M[i].Buf = ms.M[i].mem
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
			w.drop(DropTruncated, 1)
			continue
		}
		w.toPion(r, m.mem[:m.N], m.Addr, kindRelay)
	}
}

// txFor returns the worker's batch toward listener address idx.
func (w *worker) txFor(idx int) *Msgs {
	for len(w.tx) <= idx {
		w.tx = append(w.tx, NewMsgs(IdealBatchSize))
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
