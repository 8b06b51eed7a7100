package kfp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

// Config sizes a Table. Zero fields take the defaults.
type Config struct {
	// MaxAllocations is the number of allocation slots (default 16384).
	MaxAllocations int
	// MaxChannels is the number of channels that can be installed at once
	// (default 32768); each takes two entries of the flows hash map
	// (about 150 bytes each, preallocated).
	MaxChannels int
	// Clsact skips TCX and attaches with a clsact qdisc and a cls_bpf
	// filter, the route taken by itself on kernels before 6.6 (for tests,
	// and for kernels whose TCX misbehaves).
	Clsact bool
}

const (
	defaultMaxAllocations = 16384
	defaultMaxChannels    = 32768
)

// Table owns the program and its maps. It is the single writer of the
// maps: every method takes one internal mutex (control-plane calls, never
// per packet), and the program reads the maps concurrently.
type Table struct {
	mu     sync.Mutex
	closed bool

	flows, allocs, allocStats, stats *ebpf.Map
	prog                             *ebpf.Program

	gens      []uint32 // last generation handed out, per slot
	used      []bool
	free      []uint32
	installed map[Alloc]map[chanID]Channel

	attached []attachment
	clsact   bool
}

// statsBlock and allocBlock are one CPU's counters.
type (
	statsBlock [numCounters]uint64
	allocBlock [allocStatsLen / 8]uint64
)

// New creates the maps and loads the program. It attaches nothing: call
// Attach for each interface carrying listener or relay addresses.
func New(cfg Config) (*Table, error) {
	if cfg.MaxAllocations <= 0 {
		cfg.MaxAllocations = defaultMaxAllocations
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = defaultMaxChannels
	}
	t := &Table{
		gens:      make([]uint32, cfg.MaxAllocations),
		used:      make([]bool, cfg.MaxAllocations),
		installed: make(map[Alloc]map[chanID]Channel),
		clsact:    cfg.Clsact,
	}
	var err error
	mk := func(spec *ebpf.MapSpec) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.NewMap(spec)
		if err != nil {
			err = fmt.Errorf("kfp: map %s: %w", spec.Name, err)
		}
		return m
	}
	t.flows = mk(&ebpf.MapSpec{Name: "kfp_flows", Type: ebpf.Hash,
		KeySize: flowKeyLen, ValueSize: flowValueLen, MaxEntries: uint32(2 * cfg.MaxChannels)})
	t.allocs = mk(&ebpf.MapSpec{Name: "kfp_allocs", Type: ebpf.Array,
		KeySize: 4, ValueSize: allocStateLen, MaxEntries: uint32(cfg.MaxAllocations)})
	t.allocStats = mk(&ebpf.MapSpec{Name: "kfp_alloc_stats", Type: ebpf.PerCPUArray,
		KeySize: 4, ValueSize: allocStatsLen, MaxEntries: uint32(cfg.MaxAllocations)})
	t.stats = mk(&ebpf.MapSpec{Name: "kfp_stats", Type: ebpf.PerCPUArray,
		KeySize: 4, ValueSize: uint32(statsValueLen), MaxEntries: 1})
	if err != nil {
		t.closeMaps()
		return nil, err
	}
	t.prog, err = loadProgram(progMaps{
		flows: t.flows.FD(), allocs: t.allocs.FD(), allocStats: t.allocStats.FD(), stats: t.stats.FD(),
	})
	if err != nil {
		t.closeMaps()
		return nil, err
	}
	for i := cfg.MaxAllocations - 1; i >= 0; i-- {
		t.free = append(t.free, uint32(i))
	}
	return t, nil
}

// loadProgram verifies and loads the program.
func loadProgram(m progMaps) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         "kfp_ingress",
		Type:         ebpf.SchedCLS,
		Instructions: buildProgram(m),
		License:      progLicense,
	}, ebpf.ProgramOptions{LogSizeStart: 1 << 20})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kfp: load program: %+v", ve)
		}
		return nil, fmt.Errorf("kfp: load program: %w", err)
	}
	return prog, nil
}

func (t *Table) closeMaps() {
	for _, m := range []*ebpf.Map{t.flows, t.allocs, t.allocStats, t.stats} {
		if m != nil {
			m.Close()
		}
	}
}

// Program returns the loaded program (for tests and benchmarks that run
// it with BPF_PROG_TEST_RUN).
func (t *Table) Program() *ebpf.Program { return t.prog }

// NewAllocation reserves a slot for a new allocation, with a fresh
// generation, not suspended, counters zeroed.
func (t *Table) NewAllocation() (Alloc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Alloc{}, ErrClosed
	}
	if len(t.free) == 0 {
		return Alloc{}, fmt.Errorf("%w: all %d allocation slots in use", ErrFull, len(t.used))
	}
	slot := t.free[len(t.free)-1]
	gen := t.gens[slot] + 1
	if gen >= 1<<31 { // keep gen<<1 in 32 bits; wrapping to 1 is safe after 2^31 reuses
		gen = 1
	}
	a := Alloc{slot: slot, gen: gen}
	zero := make([]allocBlock, ebpf.MustPossibleCPU())
	if err := t.allocStats.Put(slot, zero); err != nil {
		return Alloc{}, fmt.Errorf("kfp: reset slot %d counters: %w", slot, err)
	}
	if err := t.allocs.Put(slot, a.state()); err != nil {
		return Alloc{}, fmt.Errorf("kfp: slot %d: %w", slot, err)
	}
	t.free = t.free[:len(t.free)-1]
	t.gens[slot], t.used[slot] = gen, true
	return a, nil
}

// live reports whether a is the slot's current allocation; t.mu is held.
func (t *Table) liveLocked(a Alloc) error {
	if t.closed {
		return ErrClosed
	}
	if int(a.slot) >= len(t.used) || !t.used[a.slot] || t.gens[a.slot] != a.gen {
		return fmt.Errorf("%w: slot %d generation %d", ErrStaleAlloc, a.slot, a.gen)
	}
	return nil
}

// DeleteAllocation disables every entry of a with one write (a new
// generation in its slot), reads its final counters, then removes its
// entries and frees the slot.
func (t *Table) DeleteAllocation(a Alloc) (AllocStats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.liveLocked(a); err != nil {
		return AllocStats{}, err
	}
	// The program compares the slot's word with the entry's exactly: any
	// other generation (here one no entry carries) turns them all off.
	if err := t.allocs.Put(a.slot, uint64(a.gen+1)<<1); err != nil {
		return AllocStats{}, fmt.Errorf("kfp: disable slot %d: %w", a.slot, err)
	}
	st, err := t.allocStatsLocked(a)
	var first error
	if err != nil {
		first = err
	}
	for _, ch := range t.installed[a] {
		if err := t.removeLocked(ch); err != nil && first == nil {
			first = err
		}
	}
	delete(t.installed, a)
	t.gens[a.slot] = a.gen + 1 // the generation just written stays retired
	t.used[a.slot] = false
	t.free = append(t.free, a.slot)
	return st, first
}

// Suspend turns every entry of a off with one write; their datagrams go
// to userspace until Resume.
func (t *Table) Suspend(a Alloc) error { return t.setState(a, a.state()|allocSuspended) }

// Resume undoes Suspend.
func (t *Table) Resume(a Alloc) error { return t.setState(a, a.state()) }

func (t *Table) setState(a Alloc, s uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.liveLocked(a); err != nil {
		return err
	}
	if err := t.allocs.Put(a.slot, s); err != nil {
		return fmt.Errorf("kfp: slot %d state: %w", a.slot, err)
	}
	return nil
}

// Install makes the kernel relay ch in both directions. Call it only while
// the allocation holds a permission for ch.Peer's IP (RFC 8656 §9); Sync
// enforces that from a permission list.
//
// The peer -> client entry goes in first, the client -> peer entry
// second (and Remove takes them out in the opposite order). So the kernel
// only ever sends toward a peer on a client's behalf while it also carries
// the peer's answers back: a half-done pair (a failed second write, a
// crash between the two) leaves the outbound direction, the one that
// sends traffic to another host and that the relay polices (permission,
// peer policy, quota), on the userspace path, which re-checks everything
// per datagram. And the answers to the first datagram the kernel relays
// already find their entry, so the return direction does not switch paths
// under a running exchange.
func (t *Table) Install(ch Channel) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.installLocked(ch)
}

func (t *Table) installLocked(ch Channel) error {
	if err := t.liveLocked(ch.Alloc); err != nil {
		return err
	}
	if err := ch.validate(); err != nil {
		return err
	}
	pk, pv, ck, cv := ch.entries()
	if err := t.flows.Put(pk[:], pv[:]); err != nil {
		return fmt.Errorf("kfp: install %s<-%s: %w", ch.Client, ch.Peer, mapErr(err))
	}
	if err := t.flows.Put(ck[:], cv[:]); err != nil {
		_ = t.flows.Delete(pk[:])
		return fmt.Errorf("kfp: install %s->%s: %w", ch.Client, ch.Peer, mapErr(err))
	}
	m := t.installed[ch.Alloc]
	if m == nil {
		m = make(map[chanID]Channel)
		t.installed[ch.Alloc] = m
	}
	m[ch.id()] = ch
	return nil
}

// mapErr turns a full hash map's E2BIG into ErrFull.
func mapErr(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if errors.Is(err, errE2BIG) {
		return fmt.Errorf("%w: %v", ErrFull, err)
	}
	return err
}

// Remove stops relaying ch in the kernel: client -> peer first, then peer
// -> client (see Install). Removing what is not installed is not an error.
func (t *Table) Remove(ch Channel) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return t.removeLocked(ch)
}

func (t *Table) removeLocked(ch Channel) error {
	pk, _, ck, _ := ch.entries()
	var first error
	for _, k := range []flowKey{ck, pk} {
		if err := t.flows.Delete(k[:]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) && first == nil {
			first = fmt.Errorf("kfp: remove %s/%s: %w", ch.Client, ch.Peer, err)
		}
	}
	if m := t.installed[ch.Alloc]; m != nil {
		delete(m, ch.id())
	}
	return first
}

// Sync makes a's installed channels exactly those of chans whose peer IP
// is in permitted (RFC 8656 §9, §12: a channel relays only while its
// peer holds a permission). It removes first, then installs, so a channel
// moved to another peer never forwards to the old one. Channels whose
// other fields changed are reinstalled.
func (t *Table) Sync(a Alloc, chans []Channel, permitted []netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.liveLocked(a); err != nil {
		return err
	}
	want := make(map[chanID]Channel, len(chans))
	for _, ch := range chans {
		ch.Alloc = a
		ip := ch.Peer.Addr().Unmap()
		if slices.ContainsFunc(permitted, func(p netip.Addr) bool { return p.Unmap() == ip }) {
			want[ch.id()] = ch
		}
	}
	var first error
	for id, ch := range t.installed[a] {
		if w, ok := want[id]; !ok || w != ch {
			if err := t.removeLocked(ch); err != nil && first == nil {
				first = err
			}
		}
	}
	for id, ch := range want {
		if have, ok := t.installed[a][id]; ok && have == ch {
			continue
		}
		if err := t.installLocked(ch); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Installed returns how many channels a has installed.
func (t *Table) Installed(a Alloc) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.installed[a])
}

// Stats sums the program's per-CPU counters.
func (t *Table) Stats() (Stats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Stats{}, ErrClosed
	}
	var blocks []statsBlock
	if err := t.stats.Lookup(uint32(0), &blocks); err != nil {
		return Stats{}, fmt.Errorf("kfp: read counters: %w", err)
	}
	raw := make([][numCounters]uint64, len(blocks))
	for i := range blocks {
		raw[i] = blocks[i]
	}
	return statsFromCounters(raw), nil
}

// AllocStats returns a's kernel-relayed packets and bytes.
func (t *Table) AllocStats(a Alloc) (AllocStats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.liveLocked(a); err != nil {
		return AllocStats{}, err
	}
	return t.allocStatsLocked(a)
}

func (t *Table) allocStatsLocked(a Alloc) (AllocStats, error) {
	var blocks []allocBlock
	if err := t.allocStats.Lookup(a.slot, &blocks); err != nil {
		return AllocStats{}, fmt.Errorf("kfp: slot %d counters: %w", a.slot, err)
	}
	var s AllocStats
	for _, b := range blocks {
		for dir := range 2 {
			s.Packets[dir] += b[allocStatPackets/8+dir]
			s.Bytes[dir] += b[allocStatBytes/8+dir]
		}
	}
	return s, nil
}

// Close detaches the program from every interface and frees the program
// and maps. Datagrams then take the userspace path again.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	first := t.detachAllLocked()
	if err := t.prog.Close(); err != nil && first == nil {
		first = err
	}
	t.closeMaps()
	return first
}
