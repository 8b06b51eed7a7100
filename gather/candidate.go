package gather

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/ice/v4"

	"github.com/isthmusrelay/isthmus/netaddr"
)

// localCandidate is one gathered candidate together with the socket it
// sends from. The socket stays ours until Connect hands it to pion/ice
// (ICE peer) or to the legacy media path (non-ICE peer).
type localCandidate struct {
	cand   ice.Candidate
	conn   net.PacketConn // host/srflx: the UDP socket; relay: the allocation
	addr   netip.AddrPort // the candidate's transport address
	family netaddr.Family
	typ    ice.CandidateType
	// relayProto is the transport to the TURN server ("udp", "tcp", "tls")
	// for relayed candidates, "" otherwise.
	relayProto string
	// release frees what the candidate holds (socket, allocation, TURN
	// client); it is idempotent.
	release func() error
	// owned is true once pion/ice or a MediaConn took the socket over.
	owned bool
	// again, for a relayed candidate, makes another allocation the same
	// way (server, family, transport, source) for ICE component 2.
	again func(ctx context.Context) jobResult
}

// onceCloser turns a close function into an idempotent one.
func onceCloser(f func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = f() })
		return err
	}
}

// addrPortOf converts a net.Addr of pion's API (UDP or TCP) into netip.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort()
	case *net.TCPAddr:
		return v.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// unmapAP strips the IPv4-mapped form a dual-stack socket may report.
func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// udpNetwork is the Go network name for a family's UDP socket.
func udpNetwork(f netaddr.Family) string {
	if f == netaddr.IPv6 {
		return "udp6"
	}
	return "udp4"
}

// tcpNetwork is the Go network name for a family's TCP socket.
func tcpNetwork(f netaddr.Family) string {
	if f == netaddr.IPv6 {
		return "tcp6"
	}
	return "tcp4"
}
