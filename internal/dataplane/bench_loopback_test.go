//go:build linux

package dataplane

import (
	"github.com/isthmusrelay/isthmus/internal/channeldata"
	"net"
	"net/netip"
	"testing"
)

// loopbackBench is k allocations on real loopback sockets, served by a
// hand-driven worker: one listener, k relay sockets, k client sockets and
// one peer socket (bound to every allocation's channel 0x4000).
type loopbackBench struct {
	h       *harness
	ln      *Conn
	relays  []*Conn
	clients []*net.UDPConn
	peer    *net.UDPConn
	// plain sockets for the naive loop (pion's pattern: one read and one
	// write per datagram through the net package)
	plainLn     *net.UDPConn
	plainRelays []*net.UDPConn
}

const loopbackAllocs = 64

func newLoopbackBench(b *testing.B, adopt bool) *loopbackBench {
	return newLoopbackBenchRaw(b, adopt, RawSendOff)
}

// newLoopbackBenchRaw is newLoopbackBench with the worker's raw senders
// opened when raw is RawSendOn (the benchmark is skipped without
// CAP_NET_RAW).
func newLoopbackBenchRaw(b *testing.B, adopt bool, raw RawSendMode) *loopbackBench {
	lb := &loopbackBench{h: newHarness(b, Config{RawSend: raw})}
	if err := lb.h.w.openRawSenders(); err != nil {
		b.Skipf("raw sockets need CAP_NET_RAW: %v", err)
	}
	b.Cleanup(lb.h.w.closeRawSenders)
	lb.peer = listenUDP(b, "udp4", "127.0.0.1:0")
	lnSock := listenUDP(b, "udp4", "127.0.0.1:0")
	if adopt {
		var err error
		if lb.ln, err = lb.h.p.Listener(lnSock); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = lb.ln.Close() })
	} else {
		lb.plainLn = lnSock
	}
	for range loopbackAllocs {
		client := listenUDP(b, "udp4", "127.0.0.1:0")
		lb.clients = append(lb.clients, client)
		rs := listenUDP(b, "udp4", "127.0.0.1:0")
		if !adopt {
			lb.plainRelays = append(lb.plainRelays, rs)
			continue
		}
		r, err := lb.h.p.Relay(rs, netip.AddrPort{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = r.Close() })
		lb.relays = append(lb.relays, r)
		src, dst := client.LocalAddr(), lb.ln.LocalAddr()
		lb.h.eh.OnAllocationCreated(src, dst, "UDP", "u", "r", r.LocalAddr(), 0)
		lb.h.eh.OnPermissionCreated(src, dst, "UDP", "u", "r", r.LocalAddr(), net.IPv4(127, 0, 0, 1))
		lb.h.eh.OnChannelCreated(src, dst, "UDP", "u", "r", r.LocalAddr(), lb.peer.LocalAddr(), 0x4000)
	}
	return lb
}

func (lb *loopbackBench) relayAddr(i int) netip.AddrPort {
	if lb.relays != nil {
		return lb.relays[i].local
	}
	return apOf(lb.plainRelays[i])
}

func (lb *loopbackBench) lnAddr() netip.AddrPort {
	if lb.ln != nil {
		return lb.ln.local
	}
	return apOf(lb.plainLn)
}

// BenchmarkLoopbackPeerToClient times, per datagram, what the relay does
// when 64 allocations' peers have each sent one 172-byte datagram: with the
// plane, 64 recvmmsg + 1 sendmmsg (worker); naive, 64 ReadFrom + 64 WriteTo
// through the net package (pion's per-allocation pattern without its
// goroutine wake-ups). Sending and draining are outside the timer.
func BenchmarkLoopbackPeerToClient(b *testing.B) {
	for _, adopt := range []bool{true, false} {
		name := map[bool]string{true: "plane", false: "naive"}[adopt]
		b.Run(name, func(b *testing.B) {
			lb := newLoopbackBench(b, adopt)
			payload := make([]byte, rtpSize)
			buf := make([]byte, SlotSize)
			frame := make([]byte, SlotSize)
			lb.h.w.txFor(0) // the worker's batch toward clients, allocated once
			b.ReportAllocs()
			b.SetBytes(rtpSize)
			b.ResetTimer()
			for done := 0; done < b.N; done += loopbackAllocs {
				b.StopTimer()
				for i := range loopbackAllocs {
					if _, err := lb.peer.WriteToUDPAddrPort(payload, lb.relayAddr(i)); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if adopt {
					lb.h.w.begin()
					for _, r := range lb.relays {
						lb.h.w.serveRelay(r)
					}
					lb.h.w.end()
				} else {
					for i, rs := range lb.plainRelays {
						n, _, err := rs.ReadFromUDPAddrPort(buf)
						if err != nil {
							b.Fatal(err)
						}
						channeldata.PutHeader(frame, 0x4000, n)
						copy(frame[channeldata.HeaderLen:], buf[:n])
						if _, err := lb.plainLn.WriteToUDPAddrPort(frame[:channeldata.HeaderLen+n], apOf(lb.clients[i])); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				for _, c := range lb.clients {
					if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkLoopbackClientToPeer times, per datagram, what the relay does
// when 64 clients have each sent one ChannelData: with the plane, one
// recvmmsg on the listener and one sendto per relay socket, or with raw
// sockets (plane-raw) one sendmmsg for all 64; naive, 64 ReadFrom on the
// listener and 64 WriteTo on relay sockets.
func BenchmarkLoopbackClientToPeer(b *testing.B) {
	for _, mode := range []struct {
		name  string
		adopt bool
		raw   RawSendMode
	}{{"plane", true, RawSendOff}, {"plane-raw", true, RawSendOn}, {"naive", false, RawSendOff}} {
		adopt := mode.adopt
		b.Run(mode.name, func(b *testing.B) {
			lb := newLoopbackBenchRaw(b, adopt, mode.raw)
			msg := channelData(0x4000, make([]byte, rtpSize), 0)
			buf := make([]byte, SlotSize)
			peer := apOf(lb.peer)
			ln := lb.lnAddr()
			b.ReportAllocs()
			b.SetBytes(rtpSize)
			b.ResetTimer()
			for done := 0; done < b.N; done += loopbackAllocs {
				b.StopTimer()
				for _, c := range lb.clients {
					if _, err := c.WriteToUDPAddrPort(msg, ln); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if adopt {
					lb.h.w.begin()
					lb.h.w.serveListener(lb.ln)
					lb.h.w.end()
				} else {
					for i := range loopbackAllocs {
						n, _, err := lb.plainLn.ReadFromUDPAddrPort(buf)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := lb.plainRelays[i].WriteToUDPAddrPort(buf[channeldata.HeaderLen:n], peer); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				for range loopbackAllocs {
					if _, _, err := lb.peer.ReadFromUDPAddrPort(buf); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}
