package dataplane

import (
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
)

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
	// raw send writes its IP and UDP headers into (udpbatch.RawHeadroom less
	// the ChannelData header). Longer datagrams are truncated by the kernel and
	// dropped with a counter.
	SlotSize = 2048 + listenerReadOffset

	// DefaultQueueLen bounds the slow-path queue of one listener socket:
	// client datagrams the fast path hands to pion/turn (STUN requests:
	// Allocate, Refresh, CreatePermission, ChannelBind), enough for a burst
	// of call set-ups. A full queue drops and counts.
	DefaultQueueLen = 1024

	// listenerReadOffset is where a listener read starts in a slot: room
	// for a raw send's IP and UDP headers in front of the application data
	// once the ChannelData header is overwritten.
	listenerReadOffset = udpbatch.RawHeadroom - channeldata.HeaderLen

	// rawSockBuf is the send buffer asked for a raw socket: one worker's
	// client-to-peer traffic for all its allocations leaves through it.
	rawSockBuf = 4 << 20

	// cmdQueueLen bounds the control-plane commands waiting for one worker.
	cmdQueueLen = 1024

	// DefaultRelayQueueLen bounds the slow-path queue of one relay socket
	// (datagrams for TCP clients, or before pion reports the allocation).
	// Kept small: there is one per allocation.
	DefaultRelayQueueLen = 32
)
