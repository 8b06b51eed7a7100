// Package dataplane is the relay's forwarding data plane: per-core loops
// that move TURN ChannelData and Send/Data indications between clients and
// peers with batched socket I/O, no heap allocation and no lock shared
// across cores per packet, while pion/turn stays the control plane
// (Allocate, Refresh, CreatePermission, ChannelBind, STUN, TCP clients).
//
// # Shape
//
// The network contract is one small interface, Batch (receive a batch, send
// a batch, never block), with one production implementation on raw
// recvmmsg/sendmmsg (fdBatch) and a fake in the tests. Batch sizes are named
// constants (IdealBatchSize, RelayReadBatch, MaxEvents, SlotSize).
//
// A Plane owns GOMAXPROCS workers. Each worker has its own epoll instance;
// the relay's per-core SO_REUSEPORT listener sockets are spread one per
// worker, and every allocation's relay socket is given to one worker. The
// relay hands pion the Conn wrappers returned by Plane.Listener and
// Plane.Relay instead of the sockets, and chains Plane.EventHandler in front
// of its own pion EventHandler so that the plane's tables follow pion's
// allocations, permissions and channel bindings exactly.
//
// # A packet's walk, client to peer
//
//  1. The client's ChannelData reaches the listener socket owned by worker
//     k (SO_REUSEPORT keeps a client on one socket); epoll_wait returns it.
//  2. One recvmmsg reads up to IdealBatchSize datagrams into the worker's
//     slots; source addresses are decoded from preallocated sockaddr
//     buffers straight into netip.AddrPort.
//  3. Per datagram: the 4-byte header (RFC 8656 section 12.4) gives the
//     channel number; the sharded copy-on-write table maps (listener
//     address, client address) to the allocation; its immutable state
//     snapshot gives the channel's peer, and the peer's IP must hold a
//     permission. The per-allocation token bucket enforces the bandwidth
//     quota; per-allocation atomics and per-core counters count it.
//  4. The slot is rewritten in place (buffer = the data after the header,
//     address = the peer) and sent on the allocation's relay socket
//     (consecutive datagrams for one relay socket share a sendmmsg).
//     A Send indication takes the same way, decoded in place by pion/stun.
//     Anything else (STUN requests) is copied to the listener's slow-path
//     queue, where pion's ReadFrom picks it up.
//
// # A packet's walk, peer to client
//
//  1. The peer's datagram reaches an allocation's relay socket; the owning
//     worker's epoll_wait returns it, usually with many other ready relay
//     sockets.
//  2. recvmmsg (up to RelayReadBatch) writes the datagram 4 bytes into a slot
//     of the worker's batch toward the allocation's listener address,
//     leaving room for the header.
//  3. The relay socket points at its allocation; the peer must hold a
//     permission, else the datagram is dropped and counted. A bound channel
//     gets the ChannelData header written in front (no padding over UDP);
//     for a permitted peer without a channel, pion/stun encodes a Data
//     indication around the data in the same slot.
//  4. After all ready sockets are read, each batch leaves in one sendmmsg on
//     the worker's own listener socket for that address: one syscall for
//     many allocations.
//
// # Waiting
//
// A worker does not park a thread in epoll_wait: its epoll descriptor is
// itself registered with Go's netpoller, and the worker polls it without
// blocking, serves what is ready, and returns to the netpoller once every
// read came back short.
//
// # Lifetimes
//
// Adopted sockets leave Go's netpoller (the descriptor is duplicated and the
// original closed), so the runtime is never woken for them. Closing a Conn
// takes it out of the tables, has the owning worker remove it from its epoll
// set, waits until every worker has finished its current wake-up (a grace
// period: no worker can still hold a table snapshot leading to it), and only
// then closes the descriptor.
//
// Example:
//
//	plane, err := dataplane.New(dataplane.Config{BandwidthLimit: 1 << 20})
//	// for each per-core listener socket:
//	ln, err := plane.Listener(udpConn)
//	// in the RelayAddressGenerator:
//	relay, err := plane.Relay(relayConn, advertised)
//	// in turn.ServerConfig:
//	cfg.EventHandler = plane.EventHandler(ownHandler)
//	prometheus.MustRegister(plane)
package dataplane
