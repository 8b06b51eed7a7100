//go:build linux

package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Nonces (RFC 8489 §9.2). pion/turn v5.1.2's nonce is an HMAC of the
// current minute alone, the same for every client, so a signed request
// captured on the wire replays from any address for an hour. The relay
// therefore issues its own nonces, bound to the client's 5-tuple and
// expiring (as coturn does), and checks them before pion sees a request:
//
//   - every NONCE pion sends (in its 401 and 438 answers) is replaced, on
//     the way out, by one of ours for the destination's 5-tuple;
//   - a signed request whose nonce was not minted for its 5-tuple, or has
//     expired, is answered 438 Stale Nonce with a fresh one;
//   - a request that passes is handed to pion with the nonce pion last
//     issued, re-signed with the key that signed it. When pion's nonce has
//     aged out, pion answers 438 and the client retries once.

// defaultNonceLifetime is how long a nonce is accepted: as coturn's
// default stale-nonce (600 s). Clients refresh allocations every few
// minutes, so an expiry costs them one extra round trip at most.
const defaultNonceLifetime = 10 * time.Minute

// nonceMACSize is the HMAC bytes kept in a nonce: 96 bits.
const nonceMACSize = 12

// fiveTuple is the client's transport address, the relay's, and the
// transport protocol ("udp", "tcp" or "tls") of a request.
type fiveTuple struct {
	proto    string
	src, dst net.Addr
	// How the gate reaches the client (dualalloc.go): the listener socket
	// (UDP) or the connection (TCP/TLS).
	pc   net.PacketConn
	conn net.Conn
}

// allocKey is the comparable form of a 5-tuple, as pion keys allocations
// by it: a stream and a datagram transport are told apart, TCP and TLS not
// (they cannot share a 5-tuple).
type allocKey struct {
	stream   bool
	src, dst netip.AddrPort
}

func (t fiveTuple) key() allocKey {
	return allocKey{stream: t.proto != "udp", src: addrPortOf(t.src), dst: addrPortOf(t.dst)}
}

// keyOf builds the allocKey of a pion event's addresses.
func keyOf(src, dst net.Addr) allocKey {
	_, stream := src.(*net.TCPAddr)
	return allocKey{stream: stream, src: addrPortOf(src), dst: addrPortOf(dst)}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// nonceBook mints and checks the relay's nonces and remembers pion's.
type nonceBook struct {
	key      [32]byte
	lifetime time.Duration

	mu       sync.Mutex
	pion     string // the latest nonce pion issued
	pionSeen time.Time
}

func newNonceBook(lifetime time.Duration) *nonceBook {
	n := &nonceBook{lifetime: lifetime}
	if _, err := rand.Read(n.key[:]); err != nil {
		panic("relay: no randomness for nonces: " + err.Error()) // crypto/rand never fails on Linux
	}
	return n
}

// mint returns a nonce for t: the issue time in seconds and an HMAC of it
// with the 5-tuple, hex-encoded (32 characters).
func (n *nonceBook) mint(t fiveTuple, now time.Time) string {
	var b [4 + nonceMACSize]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix())) //nolint:gosec // seconds fit until 2106
	copy(b[4:], n.mac(b[:4], t))
	return hex.EncodeToString(b[:])
}

// valid reports whether nonce was minted for t and has not expired.
func (n *nonceBook) valid(nonce string, t fiveTuple, now time.Time) bool {
	var b [4 + nonceMACSize]byte
	if len(nonce) != hex.EncodedLen(len(b)) {
		return false
	}
	if _, err := hex.Decode(b[:], []byte(nonce)); err != nil {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint32(b[:4])), 0)
	if age := now.Sub(issued); age < -time.Minute || age > n.lifetime {
		return false
	}
	return hmac.Equal(b[4:], n.mac(b[:4], t))
}

func (n *nonceBook) mac(stamp []byte, t fiveTuple) []byte {
	h := hmac.New(sha256.New, n.key[:])
	h.Write(stamp)
	h.Write([]byte(t.proto))
	h.Write([]byte{0})
	h.Write([]byte(t.src.String()))
	h.Write([]byte{0})
	h.Write([]byte(t.dst.String()))
	return h.Sum(nil)[:nonceMACSize]
}

// notePion records a nonce pion issued.
func (n *nonceBook) notePion(nonce string, now time.Time) {
	n.mu.Lock()
	n.pion, n.pionSeen = nonce, now
	n.mu.Unlock()
}

// pionNonce returns the latest nonce pion issued, or "" when none is known.
func (n *nonceBook) pionNonce() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pion
}
