package relay_test

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/isthmusrelay/isthmus/internal/testcert"
	"github.com/isthmusrelay/isthmus/relay"
)

// The frames that killed the relay through pion/turn#593: lengths whose
// frame size wraps to 0 in 16 bits.
var lengthWrapFrames = map[string][]byte{
	"ChannelData length 0xFFFC": append([]byte{0x40, 0x00, 0xff, 0xfc}, make([]byte, 8)...),
	"STUN length 0xFFEC":        stunHeader(0x0001, 0xffec),
}

// A stranger's 12 bytes must close only that connection, over TCP and TLS
// and both families, before and after the connection authenticated, while
// the relay keeps serving everyone else.
func TestStreamLengthWrapFrames(t *testing.T) {
	certFile, keyFile, pool := testcert.Loopback(t)
	r := startRelay(t, func(c *relay.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	tlsAddrs := map[string]netip.AddrPort{}
	for _, ap := range r.Server.ListenAddrs() {
		if ap.Port() != r.V4.Port() && ap.Port() != r.V6.Port() {
			if ap.Addr().Is4() {
				tlsAddrs["4"] = ap
			} else {
				tlsAddrs["6"] = ap
			}
		}
	}
	if len(tlsAddrs) != 2 {
		t.Fatalf("no TLS listener of each family in %v", r.Server.ListenAddrs())
	}
	dial := func(t *testing.T, transport, fam string) net.Conn {
		t.Helper()
		var c net.Conn
		var err error
		if transport == "tls" {
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", tlsAddrs[fam].String(),
				&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		} else {
			c, err = net.DialTimeout("tcp", r.Addr(fam).String(), ioTimeout)
		}
		if err != nil {
			t.Fatalf("dial %s IPv%s: %v", transport, fam, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	before, _ := r.MetricSum(t, []string{"stream_closes_total"})
	sent := 0
	for _, transport := range []string{"tcp", "tls"} {
		for _, fam := range []string{"4", "6"} {
			for name, frame := range lengthWrapFrames {
				for _, authed := range []bool{false, true} {
					label := transport + " IPv" + fam + " " + name
					if authed {
						label += " after Allocate"
					}
					t.Run(label, func(t *testing.T) {
						c := dial(t, transport, fam)
						if authed {
							sc := &stunClient{T: t, Conn: c, Username: testUser, Password: testPassword, Server: c.RemoteAddr()}
							sc.PC = streamPacketConn{c}
							sc.MustAllocate()
						}
						if _, err := c.Write(frame); err != nil {
							t.Fatal(err)
						}
						sent++
						if err := expectEOF(c); err != nil {
							t.Fatalf("after %x: %v (want the relay to close the connection)", frame[:4], err)
						}
						// Everyone else is still served, over every transport.
						for _, f := range []string{"4", "6"} {
							if err := bindingWorks(dialSTUN(t, "tcp", r.Addr(f), "", "")); err != nil {
								t.Fatalf("TCP Binding over IPv%s after the frame: %v", f, err)
							}
							if err := bindingWorks(dialSTUN(t, "udp", r.Addr(f), "", "")); err != nil {
								t.Fatalf("UDP Binding over IPv%s after the frame: %v", f, err)
							}
						}
					})
				}
			}
		}
	}
	after, _ := r.WaitMetric(t, func(v float64) bool { return v >= before+float64(sent) }, []string{"stream_closes_total"})
	if after < before+float64(sent) {
		t.Errorf("stream_closes_total rose by %v, want %d (one per closed connection)", after-before, sent)
	}
}

// streamPacketConn frames a stream for the test client with the relay's
// own rules: it must not depend on pion's framer, which has the bug.
type streamPacketConn struct{ net.Conn }

func (s streamPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	var hdr [4]byte
	if _, err := readFull(s.Conn, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if hdr[0]&0xC0 == 0 {
		n += 16
	} else {
		n = (n + 3) &^ 3
	}
	copy(b, hdr[:])
	if _, err := readFull(s.Conn, b[4:4+n]); err != nil {
		return 0, nil, err
	}
	return 4 + n, s.Conn.RemoteAddr(), nil
}

func (s streamPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return s.Conn.Write(b) }

func readFull(c net.Conn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, err := c.Read(b[got:])
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// A signed request captured on the wire and replayed from another port, or
// over TCP, gets 438: the nonce is bound to the 5-tuple it was issued on.
func TestNonceBoundToFiveTuple(t *testing.T) {
	r := startRelay(t, nil)
	for _, fam := range []string{"4", "6"} {
		victim := dialSTUN(t, "udp", r.Addr(fam), testUser, testPassword)
		victim.MustAllocate()
		captured, err := victim.Build(stun.MethodCreatePermission, peerAddress(netip.MustParseAddrPort("127.0.0.2:9")))
		if err != nil {
			t.Fatal(err)
		}
		res, err := victim.RoundTrip(captured)
		if err != nil || res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("IPv%s: the victim's own CreatePermission: %v %s", fam, err, describe(res))
		}
		for _, network := range []string{"udp", "tcp"} {
			attacker := dialSTUN(t, network, r.Addr(fam), "", "")
			res, err := attacker.RoundTrip(captured)
			if err != nil {
				t.Fatalf("IPv%s %s replay: %v", fam, network, err)
			}
			if got := errorCode(res); got != int(stun.CodeStaleNonce) {
				t.Errorf("IPv%s: CreatePermission replayed over %s from %s: got %s, want 438", fam, network, attacker.LocalAddr(), describe(res))
			}
			var nonce stun.Nonce
			if nonce.GetFrom(res) != nil || string(nonce) == string(victim.Nonce) {
				t.Errorf("IPv%s %s: 438 must carry a fresh nonce, got %q", fam, network, nonce)
			}
		}
		// The victim's nonce still works for the victim.
		if res := victim.Request(stun.MethodRefresh, lifetime(300)); res.Type.Class != stun.ClassSuccessResponse {
			t.Errorf("IPv%s: victim's Refresh after the replays: %s", fam, describe(res))
		}
	}
}

// RFC conformance of the answers pion gets wrong, each with its reason
// phrase.
func TestRequestConformance(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) {
		c.Users = append(c.Users, "bob:bob-pass")
		c.AllowPeers = []string{"2001:db8::/32"} // permissions only: nothing is sent there
	})
	server := r.Addr("6")

	t.Run("RFC8656 7.2: Allocate LIFETIME 0 gets the default lifetime", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		_, res := c.MustAllocate(lifetime(0))
		v, err := res.Get(stun.AttrLifetime)
		if err != nil || binary.BigEndian.Uint32(v) != 600 {
			t.Errorf("LIFETIME in the answer = %x (%v), want 600 s", v, err)
		}
	})
	t.Run("RFC8656 7.3: Refresh without an allocation gets 437", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		expectError(t, c.Request(stun.MethodRefresh, lifetime(600)), stun.CodeAllocMismatch, "Allocation Mismatch")
	})
	t.Run("RFC8656 9.2: CreatePermission without an allocation gets 437", func(t *testing.T) {
		c := dialSTUN(t, "tcp", server, testUser, testPassword)
		expectError(t, c.Request(stun.MethodCreatePermission, peerAddress(netip.MustParseAddrPort("127.0.0.2:9"))), stun.CodeAllocMismatch, "Allocation Mismatch")
	})
	t.Run("RFC8656 7.3: a request signed by another user gets 441", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		c.MustAllocate()
		c.Username, c.Password = "bob", "bob-pass"
		expectError(t, c.Request(stun.MethodCreatePermission, peerAddress(netip.MustParseAddrPort("127.0.0.2:9"))), stun.CodeWrongCredentials, "Wrong Credentials")
		expectError(t, c.Request(stun.MethodRefresh, lifetime(0)), stun.CodeWrongCredentials, "Wrong Credentials")
	})
	t.Run("RFC8489 14.3: a USERNAME of 513 bytes gets 400", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, strings.Repeat("u", 513), "x")
		c.Realm, c.Nonce = testRealm, []byte("0")
		expectError(t, c.Request(stun.MethodAllocate, requestedTransportUDP()), stun.CodeBadRequest, "Bad Request")
	})
	t.Run("RFC8656 14.2: a 2-byte LIFETIME gets 400", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		expectError(t, c.Allocate(attr(stun.AttrLifetime, 0, 1)), stun.CodeBadRequest, "Bad Request")
	})
	t.Run("RFC8489 14.2: a truncated XOR-PEER-ADDRESS gets 400", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		c.MustAllocate()
		expectError(t, c.Request(stun.MethodCreatePermission, attr(stun.AttrXORPeerAddress, 0, 1, 0x12, 0x34, 1)), stun.CodeBadRequest, "Bad Request")
	})
	t.Run("RFC8489 7.3: a Binding with a bad FINGERPRINT is discarded", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, "", "")
		m, err := c.Build(stun.MethodBinding)
		if err != nil {
			t.Fatal(err)
		}
		m.Raw[len(m.Raw)-1] ^= 0xff
		if err := c.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		if b, err := c.Read(time.Now().Add(300 * time.Millisecond)); err == nil {
			t.Fatalf("answered a bad FINGERPRINT with %d bytes", len(b))
		}
		if err := bindingWorks(c); err != nil {
			t.Fatalf("a good Binding afterwards: %v", err)
		}
	})
	t.Run("reason phrases: 403 Forbidden IP, and pion's own 443", func(t *testing.T) {
		c := dialSTUN(t, "udp", server, testUser, testPassword)
		c.MustAllocate()
		expectError(t, c.Request(stun.MethodCreatePermission, peerAddress(netip.MustParseAddrPort("10.0.0.1:9"))), stun.CodeForbidden, "Forbidden IP")
		// An IPv6 peer on an IPv4 allocation: pion answers this one.
		expectError(t, c.Request(stun.MethodCreatePermission, peerAddress(netip.MustParseAddrPort("[2001:db8::5]:9"))), stun.CodePeerAddrFamilyMismatch, "Peer Address Family Mismatch")
	})
}

func expectError(t *testing.T, res *stun.Message, code stun.ErrorCode, reason string) {
	t.Helper()
	var ec stun.ErrorCodeAttribute
	if res.Type.Class != stun.ClassErrorResponse || ec.GetFrom(res) != nil {
		t.Fatalf("got %s, want error %d %q", describe(res), code, reason)
	}
	if ec.Code != code || string(ec.Reason) != reason {
		t.Errorf("got %d %q, want %d %q", ec.Code, ec.Reason, code, reason)
	}
	if res.Contains(stun.AttrMessageIntegrity) && res.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(res) != nil {
		t.Errorf("the rewritten answer's FINGERPRINT does not check")
	}
}

// Wrong passwords from one source for one username are answered until the
// burst is spent, then dropped unanswered; others, and the same source as
// another user, are still served.
func TestWrongPasswordThrottle(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.Users = append(c.Users, "bob:bob-pass") })
	guesser := dialSTUN(t, "udp", r.Addr("4"), "bob", "guess")
	if res := guesser.Allocate(); errorCode(res) != int(stun.CodeUnauthorized) {
		t.Fatalf("first wrong password: %s, want 401", describe(res))
	}
	// One transmission per guess, no retransmissions: a guesser's rate.
	answered, dropped := 0, 0
	for i := 0; i < 25; i++ {
		m, err := guesser.Build(stun.MethodAllocate, requestedTransportUDP())
		if err != nil {
			t.Fatal(err)
		}
		if err := guesser.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		if _, err := guesser.Read(time.Now().Add(100 * time.Millisecond)); err == nil {
			answered++
		} else {
			dropped++
		}
	}
	// The burst is 10 (one already spent), refilled once a second.
	if answered > 12 || dropped < 10 {
		t.Errorf("%d wrong passwords answered and %d dropped in about 2.5 s, want at most 12 answered", answered, dropped)
	}
	if v, _ := r.MetricSum(t, []string{"auth_failures_total"}, "reason=throttled"); v == 0 {
		t.Error("auth_failures_total{reason=throttled} did not count the dropped guesses")
	}
	alice := dialSTUN(t, "udp", r.Addr("4"), testUser, testPassword)
	alice.MustAllocate()
}

// Unauthenticated TCP connections past the per-source cap are closed at
// once and counted; connections under it stay.
func TestUnauthStreamCap(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.MaxUnauthStreamsPerSource = 3 })
	var kept []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", r.Addr("4").String(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		kept = append(kept, c)
	}
	extra, err := net.DialTimeout("tcp", r.Addr("4").String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if err := expectEOF(extra); err != nil {
		t.Fatalf("4th unauthenticated connection from one source: %v, want closed", err)
	}
	if _, ok := r.WaitMetric(t, func(v float64) bool { return v >= 1 }, []string{"stream_closes_total"}, "reason=unauthenticated_limit"); !ok {
		t.Error("stream_closes_total{reason=unauthenticated_limit} missing")
	}
	// A kept one still works, and once it has authenticated it no longer
	// counts, so a new connection is admitted.
	sc := &stunClient{T: t, Conn: kept[0], Username: testUser, Password: testPassword, Server: kept[0].RemoteAddr(), PC: streamPacketConn{kept[0]}}
	sc.MustAllocate()
	fresh := dialSTUN(t, "tcp", r.Addr("4"), "", "")
	if err := bindingWorks(fresh); err != nil {
		t.Fatalf("new connection after one authenticated: %v", err)
	}
}
