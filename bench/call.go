package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"github.com/isthmusrelay/isthmus/internal/udpbatch"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// Path is the address-family shape of a call: the family the TURN client
// leg uses to reach the relay, and the family of the relayed address (the
// peer leg is always of the relayed family).
type Path struct {
	Client netaddr.Family
	Relay  netaddr.Family
}

// Standard paths.
var (
	// PathV6toV4 is the mission's case: an IPv6-only client gets an IPv4
	// relayed address and talks to an IPv4 peer.
	PathV6toV4 = Path{Client: netaddr.IPv6, Relay: netaddr.IPv4}
	// PathV4toV6 is the mirror: an IPv4 client, an IPv6 relay, an IPv6 peer.
	PathV4toV6 = Path{Client: netaddr.IPv4, Relay: netaddr.IPv6}
)

// String returns e.g. "ip6>ip4".
func (p Path) String() string { return p.Client.Label() + ">" + p.Relay.Label() }

// ParsePath reads the String form ("ip6>ip4"; "6>4" is accepted too).
func ParsePath(s string) (Path, error) {
	fam := func(t string) netaddr.Family {
		switch t {
		case "ip4", "4", "v4", "IPv4":
			return netaddr.IPv4
		case "ip6", "6", "v6", "IPv6":
			return netaddr.IPv6
		}
		return 0
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '>' {
			p := Path{Client: fam(s[:i]), Relay: fam(s[i+1:])}
			if p.Client == 0 || p.Relay == 0 {
				break
			}
			return p, nil
		}
	}
	return Path{}, fmt.Errorf("bench: path %q: want CLIENT>RELAY, e.g. ip6>ip4", s)
}

// warmupSSRCBit marks warm-up packets so receivers do not count them.
const warmupSSRCBit = 1 << 31

// isChannelData classifies what a client socket carries, so the bench can
// prove that steady-state traffic is ChannelData: the first two bits of a
// ChannelData message are 01, of a STUN message 00 (RFC 8656 section 12,
// RFC 7983). Only this demultiplexing bit test is ours; pion decodes.
func isChannelData(b []byte) bool { return len(b) > 0 && b[0]&0xC0 == 0x40 }

// clientSock is the TURN client leg's UDP socket, wrapped to count what pion
// writes through it by kind; the bench's reader counts what it reads.
type clientSock struct {
	*net.UDPConn
	chanOut, stunOut atomic.Uint64
	// channel is the channel number pion bound, learnt from the first
	// ChannelData it writes (0 until then). Once it is known the sender
	// frames its packets itself (see [Load.sendUp]).
	channel atomic.Uint32
}

// WriteTo counts the datagram by kind and sends it.
func (c *clientSock) WriteTo(b []byte, addr net.Addr) (int, error) {
	if num, _, ok := channeldata.Parse(b); ok {
		c.chanOut.Add(1)
		c.channel.CompareAndSwap(0, uint32(num))
	} else {
		c.stunOut.Add(1)
	}
	return c.UDPConn.WriteTo(b, addr)
}

// stream is one direction of one call as its receiver sees it.
type stream struct {
	mu         sync.Mutex
	received   uint64
	nextSeq    uint64 // highest sequence seen + 1
	duplicates uint64
	reordered  uint64
	jitter     Jitter
	// sent and sendErrors are written only by the stream's sender goroutine
	// and read after it stopped.
	sent       uint64
	sendErrors uint64
	// skipped counts packets the sender dropped for being too late.
	skipped uint64
}

func (s *stream) record(st stamp, arrived time.Duration, h *Histogram) {
	s.mu.Lock()
	switch {
	case st.seq >= s.nextSeq:
		s.nextSeq = st.seq + 1
	case st.seq+1 == s.nextSeq:
		s.duplicates++ // the newest packet again
		s.mu.Unlock()
		return
	default:
		s.reordered++
	}
	s.received++
	s.jitter.Add(st.sent, arrived)
	s.mu.Unlock()
	h.Record(arrived - st.sent)
}

// call is one TURN client leg and one peer leg.
type call struct {
	id        int
	path      Path
	sock      *clientSock
	client    *turn.Client
	relayConn net.PacketConn
	// relayed is relayConn for the client-leg reader, which starts before
	// the allocation exists.
	relayed  atomic.Pointer[net.PacketConn]
	peer     *peerSock    // shared by every call of the relayed family
	peerAddr *net.UDPAddr // peer leg's address, as pion's WriteTo wants it
	relayUDP netip.AddrPort
	// relayUDPAddr is relayUDP for sendmmsg, built once.
	relayUDPAddr *net.UDPAddr
	// allocated publishes relayUDP to the shared peer reader.
	allocated atomic.Bool
	up        stream // client -> relay -> peer, received on the peer leg
	down      stream // peer -> relay -> client, received on the client leg
	upSeq     uint64
	downSeq   uint64
	// chanIn and stunIn count what the client-leg reader read, by kind.
	chanIn, stunIn atomic.Uint64
	// rxStamps is set when both sockets deliver kernel receive times.
	rxStamps bool
	// fd is the client socket's descriptor in the load's poller, and
	// poller the poller (nil until added).
	fd     int32
	poller *clientPoller
	// serverUDP is the relay's address this call's client leg uses, and
	// server the same for the sender's own ChannelData writes.
	serverUDP *net.UDPAddr
	server    netip.AddrPort
	// serverSA is server as the client socket's sockaddr, for the
	// sender's raw sendto.
	serverSA udpbatch.Sockaddr
}

// ssrc is the RTP SSRC of one direction of the call: the call index shifted
// left once, low bit set for peer->client. Receivers find the call by it.
func (c *call) ssrc(up bool) uint32 {
	s := uint32(c.id) << 1 & 0x7FFFFFFF
	if !up {
		s |= 1
	}
	return s
}

func loopback(f netaddr.Family) netip.Addr {
	if f == netaddr.IPv6 {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// sourceFor is the generator's address of family f toward a relay at server:
// loopback for a loopback (or missing) server, else the source address the
// kernel's routing picks (connecting a UDP socket sends nothing).
func sourceFor(f netaddr.Family, server netip.AddrPort) (netip.Addr, error) {
	if !server.IsValid() || server.Addr().IsLoopback() {
		return loopback(f), nil
	}
	c, err := net.DialUDP(udpNet(f), nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bench: load: no %s route to the relay at %s: %w", f, server, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func udpNet(f netaddr.Family) string {
	if f == netaddr.IPv6 {
		return "udp6"
	}
	return "udp4"
}

// sockBuf is the receive and send buffer asked for on generator sockets: a
// few hundred packets, so a scheduling hiccup on the generator's CPU is not
// counted as relay loss.
const sockBuf = 256 << 10

// quietLogs silences pion's logs: the bench counts what matters itself.
var quietLogs = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}

// dial opens the client leg of call c and creates its TURN client;
// [call.allocate] continues once its reader runs. c.peer is set by the load.
func (c *call) dial(ctx context.Context, cfg *LoadConfig) error {
	server := cfg.Server4
	if c.path.Client == netaddr.IPv6 {
		server = cfg.Server6
	}
	if !server.IsValid() {
		return fmt.Errorf("bench: call %d: no %s server address for path %s", c.id, c.path.Client, c.path)
	}
	local := cfg.ClientIP4
	if c.path.Client == netaddr.IPv6 {
		local = cfg.ClientIP6
	}
	conn, err := net.ListenUDP(udpNet(c.path.Client), net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return fmt.Errorf("bench: call %d: client socket: %w", c.id, err)
	}
	_ = conn.SetReadBuffer(sockBuf)
	_ = conn.SetWriteBuffer(sockBuf)
	c.sock = &clientSock{UDPConn: conn}
	c.serverUDP = net.UDPAddrFromAddrPort(server)
	c.server = server
	c.serverSA.Set(server, c.path.Client == netaddr.IPv6)
	c.rxStamps = enableRxTimestamps(conn) == nil

	c.peerAddr = c.peer.addr
	c.rxStamps = c.rxStamps && c.peer.stamps

	family := turn.RequestedAddressFamilyIPv4
	if c.path.Relay == netaddr.IPv6 {
		family = turn.RequestedAddressFamilyIPv6
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr:         server.String(),
		TURNServerAddr:         server.String(),
		Username:               cfg.Username,
		Password:               cfg.Password,
		Realm:                  cfg.Realm,
		Conn:                   c.sock,
		LoggerFactory:          quietLogs,
		RequestedAddressFamily: family,
	})
	if err != nil {
		return fmt.Errorf("bench: call %d: turn client: %w", c.id, err)
	}
	c.client = cl
	return nil
}

// allocate runs Allocate and CreatePermission; the client-leg reader must
// be running (it feeds pion the responses).
func (c *call) allocate(ctx context.Context) error {
	cl := c.client
	relayConn, err := cl.AllocateWithContext(ctx)
	if err != nil {
		return fmt.Errorf("bench: call %d: allocate via %s: %w", c.id, c.client.TURNServerAddr(), err)
	}
	c.relayConn = relayConn
	c.relayed.Store(&relayConn)
	ra, ok := relayConn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("bench: call %d: relayed address %v is not UDP", c.id, relayConn.LocalAddr())
	}
	rap := ra.AddrPort()
	c.relayUDP = netip.AddrPortFrom(rap.Addr().Unmap(), rap.Port())
	c.relayUDPAddr = net.UDPAddrFromAddrPort(c.relayUDP)
	c.allocated.Store(true)
	if got := netaddr.FamilyOf(c.relayUDP.Addr()); got != c.path.Relay {
		return fmt.Errorf("bench: call %d: relayed address %s is %s, asked for %s: %w", c.id, c.relayUDP, got, c.path.Relay, ErrWrongFamily)
	}
	if err := cl.CreatePermission(c.peerAddr); err != nil {
		return fmt.Errorf("bench: call %d: create permission for %s: %w", c.id, c.peerAddr, err)
	}
	return nil
}

// ErrWrongFamily reports a relayed address of another family than asked for.
var ErrWrongFamily = errors.New("bench: relayed address of the wrong family")

// ErrChannelNotBound reports a call whose channel binding did not complete
// (its traffic would go as Send/Data indications, not ChannelData).
var ErrChannelNotBound = errors.New("bench: channel binding did not complete")

// warmUp sends warm-up packets both ways until the client leg writes
// ChannelData (pion binds the channel in the background after the first
// WriteTo, sending Send indications meanwhile) and a peer packet arrived at
// the client leg as ChannelData.
func (c *call) warmUp(ctx context.Context) error {
	buf := make([]byte, PacketSize)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var seq uint64
	for {
		n, err := marshalPacket(buf, c.ssrc(true)|warmupSSRCBit, seq, wallNow())
		if err != nil {
			return err
		}
		if _, err := c.relayConn.WriteTo(buf[:n], c.peerAddr); err != nil {
			return fmt.Errorf("bench: call %d: warm-up send via relay: %w", c.id, err)
		}
		if c.sock.chanOut.Load() > 0 {
			n, _ = marshalPacket(buf, c.ssrc(false)|warmupSSRCBit, seq, wallNow())
			if _, err := c.peer.conn.WriteToUDPAddrPort(buf[:n], c.relayUDP); err != nil {
				return fmt.Errorf("bench: call %d: warm-up send to %s: %w", c.id, c.relayUDP, err)
			}
			if c.chanIn.Load() > 0 {
				return nil
			}
		}
		seq++
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: call %d: %w (client wrote %d ChannelData, read %d): %w",
				c.id, ErrChannelNotBound, c.sock.chanOut.Load(), c.chanIn.Load(), ctx.Err())
		case <-tick.C:
		}
	}
}

// close releases the allocation and the client socket (the peer socket is
// the load's). Safe on a partly dialled call.
func (c *call) close() {
	if c.relayConn != nil {
		_ = c.relayConn.Close() // Refresh with lifetime 0, not waited for
	}
	if c.client != nil {
		c.client.Close()
	}
	switch {
	case c.poller != nil:
		c.poller.closeSock(c)
	case c.sock != nil:
		_ = c.sock.Close()
	}
}
