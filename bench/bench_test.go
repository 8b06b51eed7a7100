package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// BenchmarkRelayLoopback measures one packet's trip from a TURN client leg
// through our in-process relay (ChannelData, IPv6 client, IPv4 relay) to a
// peer socket, one packet in flight at a time: ns/op is latency, not
// throughput. It is a quick regression signal; `isthmus bench` is the load
// test.
func BenchmarkRelayLoopback(b *testing.B) {
	_, server := startOurRelay(b, 32000, 32099)
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = peer.Close() })
	sock := &clientSock{UDPConn: conn}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(), TURNServerAddr: server.String(),
		Username: testUser, Password: testPass, Realm: testRealm,
		Conn: sock, LoggerFactory: quietLogs, RequestedAddressFamily: turn.RequestedAddressFamilyIPv4,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	if err := cl.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := cl.AllocateWithContext(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rc.Close() })
	peerAddr := peer.LocalAddr()
	pkt := make([]byte, PacketSize)
	buf := make([]byte, 1500)
	// Warm up until the channel is bound, so the loop measures ChannelData.
	for sock.chanOut.Load() == 0 {
		if ctx.Err() != nil {
			b.Fatal("channel never bound")
		}
		if _, err := rc.WriteTo(pkt, peerAddr); err != nil {
			b.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := peer.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = peer.SetReadDeadline(time.Now().Add(time.Minute))
	b.SetBytes(PacketSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, _ := marshalPacket(pkt, 1, uint64(i), wallNow())
		if _, err := rc.WriteTo(pkt[:n], peerAddr); err != nil {
			b.Fatal(err)
		}
		if _, _, err := peer.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}
