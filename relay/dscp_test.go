package relay_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/relay"
	"github.com/isthmusrelay/isthmus/relay/relaytest"
)

// setSockInt sets an integer socket option on a net.Conn's descriptor.
func setSockInt(t *testing.T, c syscall.Conn, level, opt, v int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil || serr != nil {
		t.Fatalf("setsockopt %d/%d=%d: %v %v", level, opt, v, err, serr)
	}
}

// markedPeer is a UDP peer that reports each datagram's TOS / Traffic
// Class and TTL / hop limit (IP_RECVTOS, IP_RECVTTL, IPV6_RECVTCLASS,
// IPV6_RECVHOPLIMIT).
type markedPeer struct {
	conn *net.UDPConn
	v6   bool
}

func listenMarkedPeer(t *testing.T, addr string) *markedPeer {
	t.Helper()
	p := &markedPeer{conn: listenPeer(t, addr).conn, v6: strings.HasPrefix(addr, "[")}
	if p.v6 {
		setSockInt(t, p.conn, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
		setSockInt(t, p.conn, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
	} else {
		setSockInt(t, p.conn, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
		setSockInt(t, p.conn, unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
	}
	return p
}

func (p *markedPeer) addr() netip.AddrPort {
	ap := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// read returns one datagram with its TOS and TTL.
func (p *markedPeer) read(t *testing.T) (payload []byte, tos, ttl int) {
	t.Helper()
	buf, oob := make([]byte, 2048), make([]byte, 256)
	if err := p.conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	n, oobn, _, _, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatalf("peer control messages: %v", err)
	}
	tos, ttl = -1, -1
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			tos = int(m.Data[0])
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL && len(m.Data) >= 4:
			ttl = int(int32(nativeUint32(m.Data)))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			tos = int(int32(nativeUint32(m.Data)))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT && len(m.Data) >= 4:
			ttl = int(int32(nativeUint32(m.Data)))
		}
	}
	return buf[:n], tos, ttl
}

func nativeUint32(b []byte) uint32 {
	var v uint32
	for i := 3; i >= 0; i-- { // little-endian hosts (amd64, arm64)
		v = v<<8 | uint32(b[i])
	}
	return v
}

func procInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("read %s: %v", path, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestDSCPPreserved: a client's EF marking (DSCP 46, TOS 0xb8) and ECN bits
// reach the peer on the data plane's socket path and its raw path, IPv4 and
// IPv6 (RFC 8656 §14), and dscp forces a codepoint while keeping ECN; the
// raw path's TTL / hop limit is the system default.
func TestDSCPPreserved(t *testing.T) {
	ttl4 := procInt(t, "/proc/sys/net/ipv4/ip_default_ttl")
	hop6 := procInt(t, "/proc/sys/net/ipv6/conf/all/hop_limit")
	for _, tc := range []struct {
		name    string
		rawSend string
		dscp    int
		sent    int // client's TOS octet
		want    int // at the peer
	}{
		{"socket path, EF copied", "off", -1, 0xb8, 0xb8},
		{"socket path, AF41+ECT(0) copied", "off", -1, 0x8a, 0x8a},
		{"socket path, dscp 10 forced, ECN kept", "off", 10, 0xb9, 10<<2 | 1},
		{"raw path, EF copied", "on", -1, 0xb8, 0xb8},
		{"raw path, CS1+ECT(1) copied", "on", -1, 0x21, 0x21},
		{"raw path, dscp 46 forced", "on", 46, 0x00, 0xb8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rawSend == "on" && os.Geteuid() != 0 {
				t.Skip("raw_send on needs CAP_NET_RAW (run as root)")
			}
			r := startRelay(t, func(c *relay.Config) { c.RawSend, c.DSCP = relay.RawSend(tc.rawSend), tc.dscp })
			if !strings.Contains(r.Logs.String(), `"raw_send":`+strconv.FormatBool(tc.rawSend == "on")) {
				t.Fatalf("data plane not on with raw_send %s:\n%s", tc.rawSend, relaytest.LastLines(r.Logs.String(), 20))
			}
			for _, fam := range []string{"4", "6"} {
				peerAddr, wantTTL := "127.0.0.1:0", ttl4
				var fattr []stun.Setter
				if fam == "6" {
					peerAddr, wantTTL = "[::1]:0", hop6
					fattr = []stun.Setter{requestedFamily(0x02)}
				}
				peer := listenMarkedPeer(t, peerAddr)
				c := dialSTUN(t, "udp", r.Addr(fam), testUser, testPassword)
				if fam == "6" {
					setSockInt(t, c.Conn.(*net.UDPConn), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tc.sent)
				} else {
					setSockInt(t, c.Conn.(*net.UDPConn), unix.IPPROTO_IP, unix.IP_TOS, tc.sent)
				}
				c.MustAllocate(fattr...)
				if res := c.Request(stun.MethodChannelBind, peerAddress(peer.addr()), channelNumber(0x4000)); res.Type.Class != stun.ClassSuccessResponse {
					t.Fatalf("ChannelBind: %s", describe(res))
				}
				for i := 0; i < 3; i++ {
					msg := []byte("rtp-" + fam + "-" + strconv.Itoa(i))
					if err := c.Write(channelData(0x4000, msg)); err != nil {
						t.Fatal(err)
					}
					got, tos, ttl := peer.read(t)
					if string(got) != string(msg) {
						t.Fatalf("IPv%s peer got %q, want %q", fam, got, msg)
					}
					if tos != tc.want {
						t.Errorf("IPv%s datagram %d: TOS/TCLASS at the peer %#x, want %#x (client sent %#x)", fam, i, tos, tc.want, tc.sent)
					}
					if ttl != wantTTL {
						t.Errorf("IPv%s datagram %d: TTL/hop limit %d, want the system default %d", fam, i, ttl, wantTTL)
					}
				}
			}
		})
	}
}

func TestDSCPConfig(t *testing.T) {
	for _, v := range []int{-2, 64} {
		cfg := testConfig()
		cfg.DSCP = v
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dscp") {
			t.Errorf("dscp %d: Validate() = %v, want an error naming dscp", v, err)
		}
	}
	if d := relay.DefaultConfig().DSCP; d != -1 {
		t.Errorf("default dscp %d, want -1 (copy the client's)", d)
	}
}

// TestDSCPPeerToClient: a peer's marking reaches the client through the
// data plane (ChannelData and Data indications share one listener socket
// across clients, so each datagram carries its own control message), and a
// forced dscp replaces the codepoint but keeps ECN.
func TestDSCPPeerToClient(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dscp       int
		sent, want int
	}{
		{"EF copied", -1, 0xb8, 0xb8},
		{"AF41+ECT(1) copied", -1, 0x89, 0x89},
		{"unmarked stays unmarked", -1, 0, 0},
		{"dscp 10 forced, ECN kept", 10, 0xb9, 10<<2 | 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *relay.Config) { c.DSCP = tc.dscp })
			for _, fam := range []string{"4", "6"} {
				peerAddr := "127.0.0.1:0"
				var fattr []stun.Setter
				if fam == "6" {
					peerAddr = "[::1]:0"
					fattr = []stun.Setter{requestedFamily(0x02)}
				}
				peer := listenPeer(t, peerAddr)
				if fam == "6" {
					setSockInt(t, peer.conn, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tc.sent)
				} else {
					setSockInt(t, peer.conn, unix.IPPROTO_IP, unix.IP_TOS, tc.sent)
				}
				c := dialSTUN(t, "udp", r.Addr(fam), testUser, testPassword)
				client := &markedPeer{conn: c.Conn.(*net.UDPConn), v6: fam == "6"}
				if fam == "6" {
					setSockInt(t, client.conn, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
				} else {
					setSockInt(t, client.conn, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
				}
				relayed, _ := c.MustAllocate(fattr...)
				if res := c.Request(stun.MethodChannelBind, peerAddress(peer.addr()), channelNumber(0x4000)); res.Type.Class != stun.ClassSuccessResponse {
					t.Fatalf("ChannelBind: %s", describe(res))
				}
				for i := 0; i < 3; i++ {
					msg := []byte("rtp-back-" + fam + "-" + strconv.Itoa(i))
					if _, err := peer.conn.WriteToUDPAddrPort(msg, relayed); err != nil {
						t.Fatal(err)
					}
					got, tos, _ := client.read(t)
					num, payload, err := parseChannelData(got)
					if err != nil || num != 0x4000 || string(payload) != string(msg) {
						t.Fatalf("IPv%s client got % x (%v), want ChannelData 0x4000 %q", fam, got, err, msg)
					}
					if tos != tc.want {
						t.Errorf("IPv%s datagram %d: TOS/TCLASS at the client %#x, want %#x (peer sent %#x)", fam, i, tos, tc.want, tc.sent)
					}
				}
			}
		})
	}
}

// TestDSCPForcedOnTCP: a forced dscp marks what the relay sends to TCP
// clients too (an IPv4 listener's IP_TOS is inherited by the connections it
// accepts; IPv6 connections get IPV6_TCLASS once accepted, so only their
// data segments are checked), as tcpdump sees it on the loopback interface.
func TestDSCPForcedOnTCP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tcpdump needs root")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed")
	}
	r := startRelay(t, func(c *relay.Config) { c.DSCP = 46 })
	for _, fam := range []string{"4", "6"} {
		srv := r.Addr(fam)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		// -c 4: SYN-ACK, the challenge, the allocation's answer and an ACK
		// at least, all from the relay's port.
		cmd := exec.CommandContext(ctx, "tcpdump", "-i", "lo", "-n", "-v", "-l", "-c", "4",
			"tcp and src port "+strconv.Itoa(int(srv.Port()))+" and src host "+srv.Addr().String())
		var out, errb lockedbuf.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		if !waitUntil(5*time.Second, func() bool { return strings.Contains(errb.String(), "listening on") }) {
			cancel()
			_ = cmd.Wait()
			t.Fatalf("tcpdump did not start: %s", errb.String())
		}
		c := dialSTUN(t, "tcp", srv, testUser, testPassword)
		c.MustAllocate()
		err := cmd.Wait()
		cancel()
		if err != nil {
			t.Fatalf("tcpdump: %v\n%s\n%s", err, out.String(), errb.String())
		}
		n := 0
		for _, l := range strings.Split(out.String(), "\n") {
			if fam == "6" && (strings.Contains(l, "Flags [S.]") || strings.HasSuffix(strings.TrimSpace(l), "length 0")) {
				// Before Accept the kernel answers alone, unmarked.
				continue
			}
			var got string
			switch {
			case strings.Contains(l, "tos 0x"):
				got = l[strings.Index(l, "tos 0x")+4:]
			case strings.Contains(l, "class 0x"):
				got = l[strings.Index(l, "class 0x")+6:]
			default:
				continue
			}
			n++
			if !strings.HasPrefix(got, "0xb8") {
				t.Errorf("IPv%s: relay-sent TCP segment marked %q, want 0xb8 (EF):\n%s", fam, got, l)
			}
		}
		if want := map[string]int{"4": 4, "6": 1}[fam]; n < want {
			t.Errorf("IPv%s: %d marked segments parsed from tcpdump:\n%s", fam, n, out.String())
		}
	}
}
