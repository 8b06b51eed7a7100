package dataplane

import "net/netip"

// Batch sizes. Every number on the hot path is named here once.
const (
	// IdealBatchSize bounds how many datagrams one recvmmsg/sendmmsg call
	// moves, and so how many message slots (and buffers) each worker keeps per
	// batch. 64 amortises the syscall well past the point where the per-packet
	// work dominates while keeping a worker's buffers (64 x SlotSize) in L2.
	IdealBatchSize = 64

	// RelayReadBatch bounds how many datagrams are taken from one relay
	// (per-allocation) socket per readiness event. A relay socket carries one
	// call leg, so it rarely holds more than one or two datagrams; a small
	// bound keeps one noisy allocation from starving the others in the same
	// epoll wake-up (level-triggered epoll reports it again if more remain).
	RelayReadBatch = 8

	// RoundBudget bounds how many datagrams one round (the sockets one
	// epoll_wait reported) takes from each side: from the listeners (client
	// to peer) and from the relay sockets (peer to client). A listener is
	// read while its batches come back full, a relay socket up to
	// RelayReadBatch, until its side has spent the budget; the rest waits
	// for the next round (level-triggered epoll reports it again). Without
	// it a backlogged round served up to MaxEvents x RelayReadBatch relay
	// datagrams against one listener batch, so client datagrams waited
	// behind the other direction. At normal load a round holds far fewer
	// datagrams and the budget never binds.
	RoundBudget = 4 * IdealBatchSize

	// MaxEvents bounds how many ready sockets one epoll_wait returns, and so
	// how many allocations share one wake-up (and one sendmmsg toward clients).
	MaxEvents = 256

	// SlotSize is the size of one datagram buffer. It holds the largest UDP
	// payload we relay (2044 bytes; pion's server reads 1600-byte datagrams)
	// plus the 4-byte ChannelData header, and in front of them the room a
	// raw send writes its IP and UDP headers into (RawHeadroom less the
	// ChannelData header). Longer datagrams are truncated by the kernel and
	// dropped with a counter.
	SlotSize = 2048 + listenerReadOffset

	// DefaultQueueLen bounds the slow-path queue of one listener socket:
	// client datagrams the fast path hands to pion/turn (STUN requests:
	// Allocate, Refresh, CreatePermission, ChannelBind), enough for a burst
	// of call set-ups. A full queue drops and counts.
	DefaultQueueLen = 1024

	// DefaultRelayQueueLen bounds the slow-path queue of one relay socket
	// (datagrams for TCP clients, or before pion reports the allocation).
	// Kept small: there is one per allocation.
	DefaultRelayQueueLen = 32
)

// Message is one datagram slot of a batch.
type Message struct {
	// Buf is the datagram: for ReadBatch the space to fill, for WriteBatch the
	// bytes to send.
	Buf []byte
	// N is the number of bytes ReadBatch stored in Buf.
	N int
	// Addr is the source (ReadBatch) or destination (WriteBatch). IPv4
	// addresses are always in their 4-byte form, never IPv4-mapped.
	Addr netip.AddrPort
	// Trunc reports that the datagram did not fit Buf (ReadBatch).
	Trunc bool
	// TOS is the datagram's TOS / Traffic Class octet (ReadBatch on a
	// listener socket; 0 elsewhere).
	TOS uint8

	// mem is the slot's own backing buffer, so that Buf can point into it at
	// an offset (headroom for the ChannelData header) and come back.
	mem []byte
}

// Msgs is a preallocated batch: message slots and the kernel headers that
// describe them. Each worker owns its Msgs; they are never shared, so the
// kernel headers need no locking.
type Msgs struct {
	M   []Message
	sys sysHeaders
}

// NewMsgs returns n slots of SlotSize bytes each.
func NewMsgs(n int) *Msgs {
	ms := &Msgs{M: make([]Message, n)}
	mem := make([]byte, n*SlotSize)
	for i := range ms.M {
		ms.M[i].mem = mem[i*SlotSize : (i+1)*SlotSize : (i+1)*SlotSize]
		ms.M[i].Buf = ms.M[i].mem
	}
	ms.sys.init(n)
	return ms
}

// Batch is the forwarding loop's whole view of one datagram socket: receive
// a batch, send a batch. Neither call blocks. The production implementation
// is fdBatch (recvmmsg/sendmmsg on a raw socket); tests drive the loop with a
// fake.
type Batch interface {
	// ReadBatch receives up to hi-lo datagrams into ms.M[lo:hi] and returns
	// how many it received; (0, nil) means nothing is waiting.
	ReadBatch(ms *Msgs, lo, hi int) (int, error)
	// WriteBatch sends ms.M[lo:hi] and returns how many datagrams the kernel
	// accepted. The caller drops (and counts) what was not accepted.
	WriteBatch(ms *Msgs, lo, hi int) (int, error)
}
