//go:build linux

package udpbatch

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
)

// TestSystemHopLimits: the raw path's TTL and hop limit follow the network
// namespace's sysctls, not a constant 64.
func TestSystemHopLimits(t *testing.T) {
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := run.Namespace(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Sysctl("net.ipv4.ip_default_ttl", "99"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Sysctl("net.ipv6.conf.all.hop_limit", "33"); err != nil {
		t.Skipf("IPv6 sysctls unavailable: %v", err)
	}
	var ttl4, hop6 uint8
	if err := ns.Do(func() error { ttl4, hop6 = SystemHopLimits(); return nil }); err != nil {
		t.Fatal(err)
	}
	if ttl4 != 99 || hop6 != 33 {
		t.Errorf("SystemHopLimits() = %d, %d; want 99, 33 (the namespace's sysctls)", ttl4, hop6)
	}
}

func TestParseTOS(t *testing.T) {
	put := func(b []byte, level, typ int32, data []byte) int {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return unix.CmsgSpace(len(data))
	}
	b := make([]byte, 128)
	if got := parseTOS(b[:put(b, unix.IPPROTO_IP, unix.IP_TOS, []byte{0xb8})]); got != 0xb8 {
		t.Errorf("IP_TOS: got %#x, want 0xb8", got)
	}
	// Another message first (IP_TTL), then IPV6_TCLASS as an int.
	n := put(b, unix.IPPROTO_IP, unix.IP_TTL, []byte{64, 0, 0, 0})
	n += put(b[n:], unix.IPPROTO_IPV6, unix.IPV6_TCLASS, []byte{0x8a, 0, 0, 0})
	if got := parseTOS(b[:n]); got != 0x8a {
		t.Errorf("IPV6_TCLASS after IP_TTL: got %#x, want 0x8a", got)
	}
	for _, bad := range [][]byte{nil, make([]byte, 8), {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if got := parseTOS(bad); got != 0 {
			t.Errorf("parseTOS(% x) = %#x, want 0", bad, got)
		}
	}
}
