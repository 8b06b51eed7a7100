// Package dataplane is the relay's forwarding data plane: per-core loops
// that move TURN ChannelData and Send/Data indications between clients and
// peers with batched socket I/O, no heap allocation and no lock shared
// across cores per packet, while pion/turn stays the control plane
// (Allocate, Refresh, CreatePermission, ChannelBind, STUN, TCP clients).
//
// # Shape
//
// The network contract is internal/udpbatch's Batch (receive a batch, send
// a batch, never block), with udpbatch.Socket (recvmmsg/sendmmsg) in
// production and a fake in the tests. Batch sizes are named constants in
// sizes.go (IdealBatchSize, RelayReadBatch, RoundBudget, MaxEvents,
// SlotSize).
//
// A Plane owns GOMAXPROCS workers. Each worker has its own epoll set
// (udpbatch.Poller, parked in Go's netpoller: a parked worker costs no
// thread); the relay's per-core SO_REUSEPORT listener sockets are spread
// one per worker, and every allocation's relay socket is given to one
// worker. The relay hands pion the Conn wrappers returned by Plane.Listener
// and Plane.Relay instead of the sockets, and gives pion
// Plane.EventHandler(own): each of pion's events updates the plane's tables
// first, then runs the relay's own handler, so the tables follow pion's
// allocations, permissions and channel bindings exactly.
//
// A packet's walk, both ways, is stated at the top of forward.go, the
// spine; it reads only table.go (allocations, channels, permissions,
// quota) and wire.go (Send/Data indications) besides. loop.go is the
// worker's waiting and control, conn.go what pion sees, events.go pion's
// events, stats.go the per-core counters, which Plane.Stats sums: the
// plane's only export (the relay turns it into metrics).
//
// # Lifetimes
//
// Adopted sockets leave Go's netpoller (udpbatch.Adopt duplicates the
// descriptor and closes the original), so the runtime is never woken for
// them. Closing a Conn takes it out of the tables, has the owning worker
// remove it from its epoll set, waits until every worker has finished its
// current wake-up (a grace period: no worker can still hold a table
// snapshot leading to it), and only then closes the descriptor.
//
// Example:
//
//	plane, err := dataplane.New(dataplane.Config{BandwidthLimit: 1 << 20})
//	// for each per-core listener socket:
//	ln, err := plane.Listener(udpConn)
//	// in the RelayAddressGenerator:
//	relay, err := plane.Relay(relayConn, advertised)
//	// in turn.ServerConfig:
//	cfg.EventHandler = plane.EventHandler(ownHandler) // the plane's tables first, then ownHandler
//	st := plane.Stats()
package dataplane
