package relay_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/isthmusrelay/isthmus/netaddr"
	"github.com/isthmusrelay/isthmus/relay"
)

var (
	loop4 = netip.MustParseAddr("127.0.0.1")
	loop6 = netip.IPv6Loopback()
	// REQUESTED-ADDRESS-FAMILY values (RFC 8656 §18.12).
	famIPv4 byte = 0x01
	famIPv6 byte = 0x02
)

// familyOf maps a test's "4"/"6" to the netaddr family.
func familyOf(f string) netaddr.Family {
	if f == "6" {
		return netaddr.IPv6
	}
	return netaddr.IPv4
}

// isWireIPv4 reports whether an XOR address attribute carried family 0x01.
func isWireIPv4(ap netip.AddrPort) bool { return ap.Addr().Is4() }

// TestAllocateAddressFamily checks which relayed address family an Allocate gets
// (RFC 6156 §4.2, RFC 8656 §7.2): IPv4 unless the client asks for IPv6, whatever
// family the client used to reach the relay.
func TestAllocateAddressFamily(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	cases := []struct {
		name      string
		transport string
		client    string // family the client reaches the relay over
		attrs     []stun.Setter
		wantCode  int        // 0: success
		wantRelay netip.Addr // relayed IP on success (family on the wire included)
	}{
		{name: "RFC6156 4.2: no REQUESTED-ADDRESS-FAMILY from an IPv6 client -> IPv4 relay",
			transport: "udp", client: "6", wantRelay: loop4},
		{name: "RFC6156 4.2: no REQUESTED-ADDRESS-FAMILY from an IPv4 client -> IPv4 relay",
			transport: "udp", client: "4", wantRelay: loop4},
		{name: "RFC6156 4.2: no REQUESTED-ADDRESS-FAMILY from an IPv6 client over TCP -> IPv4 relay",
			transport: "tcp", client: "6", wantRelay: loop4},
		{name: "RFC6156 4.2: REQUESTED-ADDRESS-FAMILY=IPv6 from an IPv6 client -> IPv6 relay",
			transport: "udp", client: "6", attrs: []stun.Setter{requestedFamily(famIPv6)}, wantRelay: loop6},
		{name: "RFC6156 4.2: REQUESTED-ADDRESS-FAMILY=IPv6 from an IPv4 client -> IPv6 relay",
			transport: "udp", client: "4", attrs: []stun.Setter{requestedFamily(famIPv6)}, wantRelay: loop6},
		{name: "RFC6156 4.2: REQUESTED-ADDRESS-FAMILY=IPv6 from an IPv4 client over TCP -> IPv6 relay",
			transport: "tcp", client: "4", attrs: []stun.Setter{requestedFamily(famIPv6)}, wantRelay: loop6},
		{name: "RFC6156 4.2: REQUESTED-ADDRESS-FAMILY=IPv4 from an IPv6 client -> IPv4 relay",
			transport: "udp", client: "6", attrs: []stun.Setter{requestedFamily(famIPv4)}, wantRelay: loop4},
		{name: "RFC6156 4.2: unsupported REQUESTED-ADDRESS-FAMILY 0x03 -> 440",
			transport: "udp", client: "6", attrs: []stun.Setter{requestedFamily(0x03)}, wantCode: 440},
		{name: "RFC6156 4.2: unsupported REQUESTED-ADDRESS-FAMILY 0x00 -> 440",
			transport: "udp", client: "4", attrs: []stun.Setter{requestedFamily(0x00)}, wantCode: 440},
		// RFC 8656 §7.2 step 5 rejects the combination before it looks the token up.
		{name: "RFC8656 7.2: REQUESTED-ADDRESS-FAMILY with an unknown RESERVATION-TOKEN -> 400",
			transport: "udp", client: "6", attrs: []stun.Setter{requestedFamily(famIPv6), reservationToken([]byte("unknown!"))}, wantCode: 400},
		{name: "RFC8656 7.2: EVEN-PORT with an unknown RESERVATION-TOKEN -> 400",
			transport: "udp", client: "4", attrs: []stun.Setter{evenPort(false), reservationToken([]byte("unknown!"))}, wantCode: 400},
	}
	created := map[string]float64{} // allocations per client and relay family label so far
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSTUN(t, tc.transport, r.addr(tc.client), testUser, testPassword)
			res := c.allocate(tc.attrs...)
			if tc.wantCode != 0 {
				if got := errorCode(res); got != tc.wantCode || res.Type.Class != stun.ClassErrorResponse {
					t.Fatalf("Allocate: got %s, want error %d", describe(res), tc.wantCode)
				}
				return
			}
			if res.Type != stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse) {
				t.Fatalf("Allocate: got %s, want success", describe(res))
			}
			relayed, err := xorAddr(res, stun.AttrXORRelayedAddress)
			if err != nil {
				t.Fatal(err)
			}
			clientFam, relayFam := "client_family="+familyOf(tc.client).Label(), "family="+netaddr.FamilyOf(tc.wantRelay).Label()
			if n, ok := r.waitMetric(t, func(v float64) bool { return v >= created[clientFam+relayFam]+1 },
				[]string{"allocations_created"}, clientFam, relayFam); !ok {
				t.Errorf("allocations_created_total{%s,%s} = %v, want %v", clientFam, relayFam, n, created[clientFam+relayFam]+1)
			}
			created[clientFam+relayFam]++
			if relayed.Addr() != tc.wantRelay {
				t.Errorf("XOR-RELAYED-ADDRESS %s (wire family IPv4=%v), want %s", relayed, isWireIPv4(relayed), tc.wantRelay)
			}
			if relayed.Port() == 0 {
				t.Errorf("XOR-RELAYED-ADDRESS %s has port 0", relayed)
			}
			mapped, err := xorAddr(res, stun.AttrXORMappedAddress)
			if err != nil {
				t.Errorf("Allocate success lacks XOR-MAPPED-ADDRESS (RFC 8656 7.3): %v", err)
			} else if mapped != c.localAddr() {
				t.Errorf("XOR-MAPPED-ADDRESS %s, want the client's address %s", mapped, c.localAddr())
			}
			c.release()
		})
	}
}

// TestReservationKeepsFamily is the RTCP-pair case: an Allocate with EVEN-PORT
// (R bit set) reserves the next port; a second Allocate with the RESERVATION-TOKEN
// gets that port, on the first allocation's address family (RFC 8656 §7.2 and
// RFC 6156 §4.2: the token stands in for REQUESTED-ADDRESS-FAMILY).
func TestReservationKeepsFamily(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name   string
		client string
		attrs  []stun.Setter
		want   netip.Addr
	}{
		{"RFC8656 7.2: EVEN-PORT R=1 on an IPv6 relay, then RESERVATION-TOKEN -> next port, still IPv6",
			"6", []stun.Setter{requestedFamily(famIPv6)}, loop6},
		{"RFC8656 7.2: EVEN-PORT R=1 on an IPv6 relay requested over IPv4, then RESERVATION-TOKEN -> still IPv6",
			"4", []stun.Setter{requestedFamily(famIPv6)}, loop6},
		{"RFC8656 7.2: EVEN-PORT R=1 on an IPv4 relay from an IPv6 client, then RESERVATION-TOKEN -> still IPv4",
			"6", nil, loop4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Several pairs, each from fresh source ports: a relay with several
			// listener sockets per address must honour a token whichever socket
			// the second Allocate arrives on.
			for pair := 0; pair < reservationPairs; pair++ {
				reservePair(t, r, tc.client, tc.attrs, tc.want)
			}
		})
	}
}

// reservationPairs is how many RTP/RTCP allocation pairs each reservation case makes.
const reservationPairs = 3

// reservePair allocates with EVEN-PORT R=1, checks that a valid token combined
// with REQUESTED-ADDRESS-FAMILY or EVEN-PORT is refused, then allocates with the
// token alone from another socket.
func reservePair(t *testing.T, r *testRelay, client string, attrs []stun.Setter, want netip.Addr) {
	rtp := dialSTUN(t, "udp", r.addr(client), testUser, testPassword)
	first, res := rtp.mustAllocate(append(attrs, evenPort(true))...)
	if first.Addr() != want {
		t.Fatalf("EVEN-PORT Allocate: relayed %s, want IP %s", first, want)
	}
	if first.Port()%2 != 0 {
		t.Errorf("EVEN-PORT Allocate: relayed port %d is odd", first.Port())
	}
	tok, err := res.Get(stun.AttrReservationToken)
	if err != nil || len(tok) != 8 {
		t.Fatalf("EVEN-PORT R=1 Allocate success lacks an 8-byte RESERVATION-TOKEN (got %x, %v)", tok, err)
	}
	rtcp := dialSTUN(t, "udp", r.addr(client), testUser, testPassword)
	// A valid token with REQUESTED-ADDRESS-FAMILY or EVEN-PORT is a bad
	// request (RFC 6156 4.2, RFC 8656 7.2 step 5); the reservation stays.
	for _, bad := range []struct {
		attr stun.Setter
		name string
	}{
		{requestedFamily(famIPv6), "REQUESTED-ADDRESS-FAMILY=IPv6"},
		{requestedFamily(famIPv4), "REQUESTED-ADDRESS-FAMILY=IPv4"},
		{evenPort(false), "EVEN-PORT"},
	} {
		if res := rtcp.allocate(reservationToken(tok), bad.attr); errorCode(res) != 400 {
			t.Errorf("RFC6156 4.2: Allocate with a valid RESERVATION-TOKEN and %s: got %s, want 400", bad.name, describe(res))
		}
	}
	second, _ := rtcp.mustAllocate(reservationToken(tok))
	if second.Addr() != first.Addr() {
		t.Errorf("RESERVATION-TOKEN Allocate: relayed %s (wire IPv4=%v), want the reserved family and IP %s",
			second, isWireIPv4(second), first.Addr())
	}
	if second.Port() != first.Port()+1 {
		t.Errorf("RESERVATION-TOKEN Allocate: relayed port %d, want the reserved port %d", second.Port(), first.Port()+1)
	}
	rtcp.release()
	rtp.release()
}

// TestPeerFamilyMismatch: a permission or channel for a peer of the other family
// than the allocation's, or a Refresh asking for the other family, is refused
// with 443 (RFC 6156 §4.3, §5.1; RFC 8656 §7.3, §9.1, §12.2).
func TestPeerFamilyMismatch(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	v6peer, v4peer := peerAddress(netip.MustParseAddrPort("[::1]:5000")), peerAddress(netip.MustParseAddrPort("127.0.0.1:5000"))
	for _, tc := range []struct {
		name   string
		alloc  []stun.Setter // Allocate attributes
		method stun.Method
		attrs  []stun.Setter
	}{
		{"RFC6156 4.3: CreatePermission to an IPv6 peer on an IPv4 relay -> 443",
			nil, stun.MethodCreatePermission, []stun.Setter{v6peer}},
		{"RFC6156 4.3: CreatePermission to an IPv4 peer on an IPv6 relay -> 443",
			[]stun.Setter{requestedFamily(famIPv6)}, stun.MethodCreatePermission, []stun.Setter{v4peer}},
		{"RFC6156 4.3: ChannelBind to an IPv6 peer on an IPv4 relay -> 443",
			nil, stun.MethodChannelBind, []stun.Setter{v6peer, channelNumber(0x4000)}},
		{"RFC6156 4.3: ChannelBind to an IPv4 peer on an IPv6 relay -> 443",
			[]stun.Setter{requestedFamily(famIPv6)}, stun.MethodChannelBind, []stun.Setter{v4peer, channelNumber(0x4000)}},
		{"RFC6156 4.3: Refresh asking for IPv6 on an IPv4 allocation -> 443",
			nil, stun.MethodRefresh, []stun.Setter{requestedFamily(famIPv6), lifetime(600)}},
		{"RFC6156 4.3: Refresh asking for IPv4 on an IPv6 allocation -> 443",
			[]stun.Setter{requestedFamily(famIPv6)}, stun.MethodRefresh, []stun.Setter{requestedFamily(famIPv4), lifetime(600)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
			c.mustAllocate(tc.alloc...)
			res := c.request(tc.method, tc.attrs...)
			if got := errorCode(res); got != 443 {
				t.Errorf("%v: got %s, want 443 Peer Address Family Mismatch", tc.method, describe(res))
			}
		})
	}
}

// TestAllocationMismatch: a second Allocate on the same 5-tuple, whatever family
// it asks for, is refused with 437 (RFC 8656 §7.2 step 2).
func TestAllocationMismatch(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	for _, fam := range []byte{famIPv4, famIPv6} {
		c := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
		c.mustAllocate()
		if res := c.allocate(requestedFamily(fam)); errorCode(res) != 437 {
			t.Errorf("RFC8656 7.2: second Allocate (family 0x%02x) on the same 5-tuple: got %s, want 437", fam, describe(res))
		}
	}
}

// TestAuthentication: long-term credentials (RFC 8489 §9.2) and the TURN REST
// API usernames "expiry:user" with base64(HMAC-SHA1(secret, username)) passwords.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	const secondSecret = "rest-secret-2"
	r := startRelay(t, func(c *relay.Config) { c.AuthSecrets = append(c.AuthSecrets, secondSecret) })
	rest := func(secret string, ttl time.Duration) (string, string) {
		u, p, err := turn.GenerateLongTermTURNRESTCredentials(secret, "bob", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return u, p
	}
	validUser, validPass := rest(testSecret, time.Hour)
	rotUser, rotPass := rest(secondSecret, time.Hour)
	expUser, expPass := rest(testSecret, -time.Minute)
	otherUser, otherPass := rest("not-our-secret", time.Hour)
	cases := []struct {
		name     string
		user     string
		pass     string
		wantCode int
	}{
		{"RFC8489 9.2.4: no credentials -> 401 with REALM and NONCE", "", "", 401},
		{"RFC8489 9.2.4: wrong password -> 401", testUser, "not-" + testPassword, 401},
		{"RFC8489 9.2.4: unknown user -> 401", "mallory", testPassword, 401},
		{"TURN REST: expired username -> 401", expUser, expPass, 401},
		{"TURN REST: password from another secret -> 401", otherUser, otherPass, 401},
		{"TURN REST: expiry edited after signing -> 401",
			strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10) + ":bob", validPass, 401},
		{"RFC8489 9.2: static user -> success", testUser, testPassword, 0},
		{"TURN REST: valid username -> success", validUser, validPass, 0},
		{"TURN REST: second active secret (rotation) -> success", rotUser, rotPass, 0},
	}
	rejected := 0 // requests with credentials that got 401
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSTUN(t, "udp", r.addr("6"), tc.user, tc.pass)
			res := c.allocate()
			if tc.wantCode == 0 {
				if res.Type.Class != stun.ClassSuccessResponse {
					t.Fatalf("Allocate as %q: got %s, want success", tc.user, describe(res))
				}
				c.release()
				return
			}
			if got := errorCode(res); got != tc.wantCode {
				t.Fatalf("Allocate as %q: got %s, want %d", tc.user, describe(res), tc.wantCode)
			}
			var realm stun.Realm
			var nonce stun.Nonce
			if err := realm.GetFrom(res); err != nil || realm.String() != testRealm {
				t.Errorf("401 REALM = %q (%v), want %q", realm, err, testRealm)
			}
			if err := nonce.GetFrom(res); err != nil || len(nonce) == 0 {
				t.Errorf("401 lacks a NONCE (%v)", err)
			}
			if tc.user != "" {
				rejected++
			}
		})
	}
	if n, ok := r.waitMetric(t, func(v float64) bool { return v >= float64(rejected) }, []string{"auth_fail"}); !ok {
		t.Errorf("auth failure metric sums to %v after %d rejected credentials, want at least %d (metrics: %v)",
			n, rejected, rejected, r.metricNames(t))
	}
}

// TestQuotas: per-user allocations beyond user_quota get 486, allocations beyond
// max_allocations get 508 (RFC 8656 §7.2), and released allocations free quota.
func TestQuotas(t *testing.T) {
	t.Parallel()
	r := startRelay(t, func(c *relay.Config) {
		c.UserQuota = 2
		c.MaxAllocations = 3
		c.Users = append(c.Users, "bob:bob-pass")
	})
	alloc := func(user, pass string) (*stunClient, *stun.Message) {
		c := dialSTUN(t, "udp", r.addr("6"), user, pass)
		return c, c.allocate()
	}
	ok := func(step string, res *stun.Message) {
		t.Helper()
		if res.Type.Class != stun.ClassSuccessResponse {
			t.Fatalf("%s: got %s, want success", step, describe(res))
		}
	}
	a1, res := alloc(testUser, testPassword)
	ok("alice allocation 1/2", res)
	_, res = alloc(testUser, testPassword)
	ok("alice allocation 2/2", res)
	_, res = alloc(testUser, testPassword)
	if got := errorCode(res); got != 486 {
		t.Errorf("RFC8656 7.2: alice allocation 3 beyond user_quota=2: got %s, want 486 Allocation Quota Reached", describe(res))
	}
	_, res = alloc("bob", "bob-pass")
	ok("bob allocation 1 (total 3/3)", res)
	_, res = alloc("bob", "bob-pass")
	if got := errorCode(res); got != 508 {
		t.Errorf("RFC8656 7.2: bob allocation 2 beyond max_allocations=3: got %s, want 508 Insufficient Capacity", describe(res))
	}
	a1.release()
	_, res = alloc("bob", "bob-pass")
	ok("bob allocation 2 after alice released one", res)
	if n, found := r.waitMetric(t, func(v float64) bool { return v >= 2 }, []string{"quota"}); !found {
		t.Errorf("quota rejection metric sums to %v after a 486 and a 508, want at least 2 (metrics: %v)", n, r.metricNames(t))
	}
}

// TestPeerPolicy: permissions and channels to peers that are not globally
// reachable are refused with 403, including every IPv6 form that embeds a
// forbidden IPv4 address (the CVE-2020-26262 class); allow_peers and deny_peers
// override the defaults, deny first.
func TestPeerPolicy(t *testing.T) {
	t.Parallel()
	r := startRelay(t, func(c *relay.Config) {
		c.AllowLoopbackPeers = false
		c.AllowPeers = []string{"198.51.100.0/24", "2001:db8:1::/48"}
		c.DenyPeers = []string{"198.51.100.128/25"}
	})
	type pcase struct {
		name   string
		peer   string
		method stun.Method
		want   int // 0 success
	}
	cp, cb := stun.MethodCreatePermission, stun.MethodChannelBind
	forbidden := 0 // 403 answers seen; each must be counted
	v4cases := []pcase{
		{"loopback 127.0.0.1 with allow_loopback_peers=false -> 403", "127.0.0.1", cp, 403},
		{"loopback 127.1.2.3 -> 403", "127.1.2.3", cp, 403},
		{"ChannelBind to loopback 127.0.0.1 -> 403", "127.0.0.1", cb, 403},
		{"unspecified 0.0.0.0 -> 403", "0.0.0.0", cp, 403},
		{"RFC1918 10.1.2.3 -> 403", "10.1.2.3", cp, 403},
		{"RFC1918 192.168.1.1 -> 403", "192.168.1.1", cp, 403},
		{"link-local 169.254.1.1 -> 403", "169.254.1.1", cp, 403},
		{"CGNAT 100.64.0.1 -> 403", "100.64.0.1", cp, 403},
		{"multicast 224.0.0.1 -> 403", "224.0.0.1", cp, 403},
		{"broadcast 255.255.255.255 -> 403", "255.255.255.255", cp, 403},
		{"documentation 192.0.2.1 -> 403", "192.0.2.1", cp, 403},
		{"benchmarking 198.18.0.1 -> 403", "198.18.0.1", cp, 403},
		{"allow_peers 198.51.100.0/24 overrides documentation range -> success", "198.51.100.7", cp, 0},
		{"ChannelBind to allow_peers address -> success", "198.51.100.8", cb, 0},
		{"deny_peers 198.51.100.128/25 beats allow_peers -> 403", "198.51.100.200", cp, 403},
		{"global 8.8.8.8 -> success", "8.8.8.8", cp, 0},
	}
	v6cases := []pcase{
		{"loopback ::1 -> 403", "::1", cp, 403},
		{"IPv4-mapped ::ffff:127.0.0.1 -> 403", "::ffff:127.0.0.1", cp, 403},
		{"ChannelBind to IPv4-mapped ::ffff:127.0.0.1 -> 403", "::ffff:127.0.0.1", cb, 403},
		{"IPv4-compatible ::127.0.0.1 -> 403", "::127.0.0.1", cp, 403},
		{"NAT64 64:ff9b::7f00:1 (127.0.0.1) -> 403", "64:ff9b::7f00:1", cp, 403},
		{"ChannelBind to NAT64 64:ff9b::7f00:1 -> 403", "64:ff9b::7f00:1", cb, 403},
		{"NAT64 64:ff9b::a01:203 (10.1.2.3) -> 403", "64:ff9b::a01:203", cp, 403},
		{"local-use NAT64 64:ff9b:1:7f00:0:100:: (127.0.0.1 in a /48) -> 403", "64:ff9b:1:7f00:0:100::", cp, 403},
		{"6to4 2002:7f00:1::1 (127.0.0.1) -> 403", "2002:7f00:1::1", cp, 403},
		{"6to4 2002:c0a8:101::1 (192.168.1.1) -> 403", "2002:c0a8:101::1", cp, 403},
		{"Teredo client 127.0.0.1 (2001:0:4136:e378:8000:63bf:80ff:fffe) -> 403", "2001:0:4136:e378:8000:63bf:80ff:fffe", cp, 403},
		{"unspecified :: -> 403", "::", cp, 403},
		{"link-local fe80::1 -> 403", "fe80::1", cp, 403},
		{"ULA fd00::1 -> 403", "fd00::1", cp, 403},
		{"multicast ff02::1 -> 403", "ff02::1", cp, 403},
		{"documentation 2001:db8::1 -> 403", "2001:db8::1", cp, 403},
		{"allow_peers 2001:db8:1::/48 -> success", "2001:db8:1::5", cp, 0},
		{"global 2606:4700:4700::1111 -> success", "2606:4700:4700::1111", cp, 0},
	}
	run := func(relayFam string, cases []pcase) {
		for _, tc := range cases {
			t.Run("IPv"+relayFam+" relay: "+tc.name, func(t *testing.T) {
				c := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
				var attrs []stun.Setter
				if relayFam == "6" {
					attrs = append(attrs, requestedFamily(famIPv6))
				}
				c.mustAllocate(attrs...)
				peer := netip.AddrPortFrom(netip.MustParseAddr(tc.peer), 4000)
				req := []stun.Setter{peerAddress(peer)}
				if tc.method == cb {
					req = append(req, channelNumber(0x4001))
				}
				res := c.request(tc.method, req...)
				got := errorCode(res)
				if tc.want == 0 && res.Type.Class != stun.ClassSuccessResponse {
					t.Errorf("%v to %s: got %s, want success", tc.method, peer, describe(res))
				}
				if tc.want != 0 && got != tc.want {
					t.Errorf("%v to %s: got %s, want %d Forbidden", tc.method, peer, describe(res), tc.want)
				}
				if got == 403 {
					forbidden++
				}
			})
		}
	}
	run("4", v4cases)
	run("6", v6cases)

	t.Run("RFC8656 9.2: one forbidden XOR-PEER-ADDRESS among allowed ones -> 403", func(t *testing.T) {
		c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
		c.mustAllocate()
		res := c.request(stun.MethodCreatePermission,
			peerAddress(netip.MustParseAddrPort("198.51.100.9:1")),
			peerAddress(netip.MustParseAddrPort("127.0.0.1:1")),
			peerAddress(netip.MustParseAddrPort("8.8.4.4:1")))
		if got := errorCode(res); got != 403 {
			t.Errorf("CreatePermission with 127.0.0.1 among allowed peers: got %s, want 403", describe(res))
		} else {
			forbidden++
		}
	})

	if n, ok := r.waitMetric(t, func(v float64) bool { return v >= float64(forbidden) }, []string{"denials"}); !ok {
		t.Errorf("peer denial metric sums to %v after %d 403 answers, want at least %d (metrics: %v)",
			n, forbidden, forbidden, r.metricNames(t))
	}
}

// TestPeerPolicyAllowCIDRRelays: with loopback peers off, allow_peers for the
// loopback range lets traffic through both ways; a permission to a loopback
// address outside it is refused and its Send indications never reach the peer.
func TestPeerPolicyAllowCIDRRelays(t *testing.T) {
	t.Parallel()
	r := startRelay(t, func(c *relay.Config) {
		c.AllowLoopbackPeers = false
		c.AllowPeers = []string{"127.0.0.2/32"}
	})
	peer := listenPeer(t, "127.0.0.2:0")
	c := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
	relayed, _ := c.mustAllocate()
	if res := c.request(stun.MethodCreatePermission, peerAddress(peer.addr())); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("CreatePermission to %s allowed by allow_peers: got %s", peer.addr(), describe(res))
	}
	c.indication(stun.MethodSend, peerAddress(peer.addr()), dataAttr([]byte("via allow_peers")))
	got, from, err := peer.readFrom()
	if err != nil || string(got) != "via allow_peers" || from != relayed {
		t.Fatalf("peer got %q from %s (%v), want %q from %s", got, from, err, "via allow_peers", relayed)
	}

	other := listenPeer(t, "127.0.0.3:0")
	if res := c.request(stun.MethodCreatePermission, peerAddress(other.addr())); errorCode(res) != 403 {
		t.Errorf("CreatePermission to %s outside allow_peers: got %s, want 403", other.addr(), describe(res))
	}
}

// allow_peers never re-opens the relay's own address (here the relay IP
// 127.0.0.1): own-address outranks it. (Relay-to-relay on a non-loopback
// relay IP is TestRelayToRelayNamespaces, e2e.)
func TestPeerPolicyAllowCIDRCannotReopenOwn(t *testing.T) {
	t.Parallel()
	r := startRelay(t, func(c *relay.Config) {
		c.AllowLoopbackPeers = false
		c.AllowPeers = []string{"127.0.0.0/8"}
	})
	service := listenPeer(t, "127.0.0.1:0") // a host service on the relay IP
	c := dialSTUN(t, "udp", r.addr("4"), testUser, testPassword)
	c.mustAllocate()
	if res := c.request(stun.MethodCreatePermission, peerAddress(service.addr())); errorCode(res) != 403 {
		t.Errorf("CreatePermission to %s (own address inside allow_peers): got %s, want 403", service.addr(), describe(res))
	}
	if res := c.request(stun.MethodChannelBind, channelNumber(0x4001), peerAddress(service.addr())); errorCode(res) != 403 {
		t.Errorf("ChannelBind to %s (own address inside allow_peers): got %s, want 403", service.addr(), describe(res))
	}
	other := listenPeer(t, "127.0.0.2:0")
	if res := c.request(stun.MethodCreatePermission, peerAddress(other.addr())); res.Type.Class != stun.ClassSuccessResponse {
		t.Errorf("CreatePermission to %s (allowed, not own): got %s", other.addr(), describe(res))
	}
}

// TestRelayDataPaths exercises RFC 8656 §11 (Send and Data indications) and §12
// (channels) with raw messages, for both relay families.
func TestRelayDataPaths(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name   string
		client string
		attrs  []stun.Setter
		peer   string
		// stranger is a peer on another IP, without a permission; loopback has
		// only one IPv6 address, so the IPv6 cases have none.
		stranger string
	}{
		{"IPv6 client, IPv4 relay", "6", nil, "127.0.0.1:0", "127.0.0.2:0"},
		{"IPv6 client, IPv6 relay", "6", []stun.Setter{requestedFamily(famIPv6)}, "[::1]:0", ""},
		{"IPv4 client, IPv6 relay", "4", []stun.Setter{requestedFamily(famIPv6)}, "[::1]:0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := listenPeer(t, tc.peer)
			c := dialSTUN(t, "udp", r.addr(tc.client), testUser, testPassword)
			relayed, _ := c.mustAllocate(tc.attrs...)
			fam := "family=" + netaddr.FamilyOf(relayed.Addr()).Label()
			toPeer, _ := r.metricSum(t, []string{"packets"}, "direction=client_to_peer", fam)
			fromPeer, _ := r.metricSum(t, []string{"packets"}, "direction=peer_to_client", fam)
			defer func() {
				// Two datagrams each way were relayed (indication and channel).
				if n, ok := r.waitMetric(t, func(v float64) bool { return v >= toPeer+2 }, []string{"packets"}, "direction=client_to_peer", fam); !ok {
					t.Errorf("packets{client_to_peer,%s} = %v, want at least %v", fam, n, toPeer+2)
				}
				if n, ok := r.waitMetric(t, func(v float64) bool { return v >= fromPeer+2 }, []string{"packets"}, "direction=peer_to_client", fam); !ok {
					t.Errorf("packets{peer_to_client,%s} = %v, want at least %v", fam, n, fromPeer+2)
				}
			}()

			if res := c.request(stun.MethodCreatePermission, peerAddress(peer.addr())); res.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("CreatePermission to %s: got %s", peer.addr(), describe(res))
			}

			// §11.2 Send indication -> UDP datagram from the relayed address.
			c.indication(stun.MethodSend, peerAddress(peer.addr()), dataAttr([]byte("send-indication")))
			got, from, err := peer.readFrom()
			if err != nil || string(got) != "send-indication" || from != relayed {
				t.Fatalf("RFC8656 11.2: peer got %q from %s (%v), want %q from %s", got, from, err, "send-indication", relayed)
			}

			// §9: a peer IP without a permission is not relayed. It sends first,
			// to the same relayed socket, so were it relayed it would arrive first.
			if tc.stranger != "" {
				stranger := listenPeer(t, tc.stranger)
				if _, err := stranger.conn.WriteToUDPAddrPort([]byte("no-permission"), relayed); err != nil {
					t.Fatal(err)
				}
			}
			// §11.3 datagram from the peer -> Data indication with XOR-PEER-ADDRESS and DATA.
			if _, err := peer.conn.WriteToUDPAddrPort([]byte("data-indication"), relayed); err != nil {
				t.Fatal(err)
			}
			m := c.readMessage(t, func(b []byte) bool { return stun.IsMessage(b) })
			msg := &stun.Message{Raw: m}
			if err := msg.Decode(); err != nil {
				t.Fatal(err)
			}
			if msg.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
				t.Fatalf("RFC8656 11.3: got %v, want Data indication", msg.Type)
			}
			if from, err := xorAddr(msg, stun.AttrXORPeerAddress); err != nil || from != peer.addr() {
				t.Errorf("RFC8656 11.3: Data indication XOR-PEER-ADDRESS %s (%v), want %s", from, err, peer.addr())
			}
			if data, err := msg.Get(stun.AttrData); err != nil || string(data) != "data-indication" {
				t.Errorf("RFC8656 11.3: Data indication DATA %q (%v), want %q (RFC8656 9: a peer without permission is dropped)",
					data, err, "data-indication")
			}

			// §12: ChannelBind, then ChannelData both ways.
			const ch = 0x4abc
			if res := c.request(stun.MethodChannelBind, peerAddress(peer.addr()), channelNumber(ch)); res.Type.Class != stun.ClassSuccessResponse {
				t.Fatalf("ChannelBind: got %s", describe(res))
			}
			if err := c.write(channelData(ch, []byte("to-peer-on-channel"))); err != nil {
				t.Fatal(err)
			}
			got, from, err = peer.readFrom()
			if err != nil || string(got) != "to-peer-on-channel" || from != relayed {
				t.Fatalf("RFC8656 12.6: peer got %q from %s (%v), want %q from %s", got, from, err, "to-peer-on-channel", relayed)
			}
			if _, err := peer.conn.WriteToUDPAddrPort([]byte("from-peer-on-channel"), relayed); err != nil {
				t.Fatal(err)
			}
			b := c.readMessage(t, func(b []byte) bool { return len(b) >= 4 && b[0]&0xC0 == 0x40 })
			num, payload, err := parseChannelData(b)
			if err != nil || num != ch || string(payload) != "from-peer-on-channel" {
				t.Errorf("RFC8656 12.5: got ChannelData 0x%04x %q (%v), want 0x%04x %q", num, payload, err, ch, "from-peer-on-channel")
			}

			// §12.2: binding a second peer to a bound channel, or the channel's peer to another channel -> 400.
			other := listenPeer(t, tc.peer) // same IP, another port: another transport address
			if res := c.request(stun.MethodChannelBind, peerAddress(other.addr()), channelNumber(ch)); errorCode(res) != 400 {
				t.Errorf("RFC8656 12.2: channel 0x%04x rebound to another peer: got %s, want 400", ch, describe(res))
			}
			if res := c.request(stun.MethodChannelBind, peerAddress(peer.addr()), channelNumber(ch+1)); errorCode(res) != 400 {
				t.Errorf("RFC8656 12.2: peer already bound, second channel: got %s, want 400", describe(res))
			}
			if res := c.request(stun.MethodChannelBind, peerAddress(other.addr()), channelNumber(0x3fff)); errorCode(res) != 400 {
				t.Errorf("RFC8656 12.2: channel number 0x3fff out of range: got %s, want 400", describe(res))
			}
		})
	}
}

// readMessage reads from the client until want accepts a message or ioTimeout passes.
func (c *stunClient) readMessage(t testing.TB, want func([]byte) bool) []byte {
	t.Helper()
	end := time.Now().Add(ioTimeout)
	for {
		b, err := c.read(end)
		if err != nil {
			t.Fatalf("waiting for a message from the relay: %v", err)
		}
		if want(b) {
			return b
		}
	}
}

// channelData frames payload as ChannelData (RFC 8656 §12.4). The message is not
// padded: over UDP padding is optional, and these tests send it over UDP.
func channelData(ch uint16, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

func parseChannelData(b []byte) (uint16, []byte, error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("ChannelData of %d bytes", len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if 4+n > len(b) {
		return 0, nil, fmt.Errorf("ChannelData length %d beyond %d bytes", n, len(b))
	}
	return binary.BigEndian.Uint16(b[0:2]), b[4 : 4+n], nil
}

// TestPionClient runs pion/turn's own client against the relay for every
// combination of client and relay family and exchanges datagrams both ways
// through a loopback UDP peer of the relay's family.
func TestPionClient(t *testing.T) {
	t.Parallel()
	r := startRelay(t, nil)
	for _, tc := range []struct {
		name   string
		client string
		family turn.RequestedAddressFamily
		peer   string
	}{
		{"IPv6 client, IPv4 relay", "6", turn.RequestedAddressFamilyIPv4, "127.0.0.1:0"},
		{"IPv6 client, IPv6 relay", "6", turn.RequestedAddressFamilyIPv6, "[::1]:0"},
		{"IPv4 client, IPv4 relay", "4", turn.RequestedAddressFamilyIPv4, "127.0.0.1:0"},
		{"IPv4 client, IPv6 relay", "4", turn.RequestedAddressFamilyIPv6, "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := newPionClient(t, r.addr(tc.client), tc.family, testUser, testPassword)
			if err != nil {
				t.Fatal(err)
			}
			relayed := pc.relayedAddr()
			if want := tc.family == turn.RequestedAddressFamilyIPv6; relayed.Addr().Unmap().Is6() != want {
				t.Fatalf("relayed address %s, want IPv6=%v", relayed, want)
			}
			peer := listenPeer(t, tc.peer)
			exchange(t, pc.relayed, peer, 30)
		})
	}
}

// exchange sends n datagrams from the allocation to the peer, which echoes each
// back; every one must arrive, in lock step so no buffer can overflow.
func exchange(t testing.TB, relayed net.PacketConn, peer *udpPeer, n int) {
	t.Helper()
	relayedAP := netip.MustParseAddrPort(relayed.LocalAddr().String())
	relayedAP = netip.AddrPortFrom(relayedAP.Addr().Unmap(), relayedAP.Port())
	peerAddr := net.UDPAddrFromAddrPort(peer.addr())
	buf := make([]byte, 1500)
	sent, echoed := 0, 0
	for i := 0; i < n; i++ {
		msg := []byte(fmt.Sprintf("isthmus datagram %03d", i))
		if _, err := relayed.WriteTo(msg, peerAddr); err != nil {
			t.Fatalf("datagram %d: WriteTo %s: %v", i, peerAddr, err)
		}
		sent++
		got, from, err := peer.readFrom()
		if err != nil {
			t.Fatalf("datagram %d: peer read: %v (sent %d, echoed %d)", i, err, sent, echoed)
		}
		if !bytes.Equal(got, msg) || from != relayedAP {
			t.Fatalf("datagram %d: peer got %q from %s, want %q from %s", i, got, from, msg, relayedAP)
		}
		if _, err := peer.conn.WriteToUDPAddrPort(got, from); err != nil {
			t.Fatal(err)
		}
		if err := relayed.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		k, src, err := relayed.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: read echo through relay: %v (sent %d, echoed %d)", i, err, sent, echoed)
		}
		if !bytes.Equal(buf[:k], msg) || netip.MustParseAddrPort(src.String()) != peer.addr() {
			t.Fatalf("datagram %d: echo %q from %s, want %q from %s", i, buf[:k], src, msg, peer.addr())
		}
		echoed++
	}
	if sent != n || echoed != n {
		t.Errorf("sent %d, echoed %d, want %d each", sent, echoed, n)
	}
}

// TestXORPeerAddressEncoding checks the test's own XOR-PEER-ADDRESS encoder
// against pion's decoder, including the family-0x02 IPv4-mapped form pion's
// encoder cannot produce.
func TestXORPeerAddressEncoding(t *testing.T) {
	for _, s := range []string{"127.0.0.1:4000", "[::1]:3478", "[::ffff:127.0.0.1]:9", "[64:ff9b::7f00:1]:65535"} {
		want := netip.MustParseAddrPort(s)
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), peerAddress(want))
		if err != nil {
			t.Fatal(err)
		}
		got, err := xorAddr(m, stun.AttrXORPeerAddress)
		if err != nil || got != want {
			t.Errorf("%s: decoded %s (%v)", want, got, err)
		}
	}
}

// TestEvenPortSkipsBusyPorts: other sockets on the host (client ephemeral ports
// overlap the default relay range) may hold relay ports. With every even port of
// a small range held but one, an EVEN-PORT Allocate must still get that one and
// its successor must serve the RESERVATION-TOKEN (RFC 8656 §7.2: 508 only when
// the server truly cannot satisfy the request).
func TestEvenPortSkipsBusyPorts(t *testing.T) {
	t.Parallel()
	const span = 32
	base, free, holders := busyEvenPortBlock(t, span)
	defer func() {
		for _, h := range holders {
			_ = h.Close()
		}
	}()
	r := startRelay(t, func(c *relay.Config) { c.MinPort, c.MaxPort = base, base+span-1 })
	rtp := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
	res := rtp.allocate(evenPort(true))
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("EVEN-PORT Allocate with ports %d..%d held by other sockets except %d/%d: got %s, want success on %d",
			base, base+span-1, free, free+1, describe(res), free)
	}
	first, err := xorAddr(res, stun.AttrXORRelayedAddress)
	if err != nil {
		t.Fatal(err)
	}
	if int(first.Port()) != free {
		t.Errorf("EVEN-PORT Allocate: relayed %s, want port %d (the only free even port)", first, free)
	}
	tok, err := res.Get(stun.AttrReservationToken)
	if err != nil {
		t.Fatalf("no RESERVATION-TOKEN: %v", err)
	}
	rtcp := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
	second, _ := rtcp.mustAllocate(reservationToken(tok))
	if second != netip.AddrPortFrom(first.Addr(), first.Port()+1) {
		t.Errorf("RESERVATION-TOKEN Allocate: relayed %s, want %s:%d", second, first.Addr(), first.Port()+1)
	}
}

// busyEvenPortBlock finds span consecutive UDP ports on 127.0.0.1, above the
// kernel's usual ephemeral range, that are all free; it then holds every even
// port but one (returned as free) with sockets the caller closes.
func busyEvenPortBlock(t *testing.T, span int) (base, free int, holders []net.PacketConn) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		base = 61000 + 2*mrand.IntN((65535-61000-span)/2)
		var conns []net.PacketConn
		ok := true
		for p := base; p < base+span; p++ {
			c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			conns = append(conns, c)
		}
		if !ok {
			for _, c := range conns {
				_ = c.Close()
			}
			continue
		}
		free = base + 2*mrand.IntN(span/2)
		for i, c := range conns {
			p := base + i
			if p%2 == 0 && p != free {
				holders = append(holders, c)
				continue
			}
			_ = c.Close()
		}
		return base, free, holders
	}
	t.Skip("no block of free UDP ports found on 127.0.0.1 above 61000")
	return 0, 0, nil
}

// TestAllocationBandwidth: with allocation_bandwidth set, a burst far above it is
// cut, and every datagram not relayed is counted as a drop (no silent drops).
func TestAllocationBandwidth(t *testing.T) {
	t.Parallel()
	const (
		limit = 1500 // bytes per second, the smallest the config accepts
		// 240 KB at once: above any sensible token-bucket burst at 1500 B/s.
		burst = 200
		size  = 1200
	)
	r := startRelay(t, func(c *relay.Config) { c.AllocationBandwidth = limit })
	peer := listenPeer(t, "127.0.0.1:0")
	// Room for the whole burst, so the kernel never drops what the relay sent.
	if err := peer.conn.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	c := dialSTUN(t, "udp", r.addr("6"), testUser, testPassword)
	c.mustAllocate()
	if res := c.request(stun.MethodCreatePermission, peerAddress(peer.addr())); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("CreatePermission: %s", describe(res))
	}
	dropsBefore, _ := r.metricSum(t, []string{"drops"}, "reason=bandwidth")
	payload := bytes.Repeat([]byte{'b'}, size)
	for i := 0; i < burst; i++ {
		c.indication(stun.MethodSend, peerAddress(peer.addr()), dataAttr(payload))
	}
	// Count what arrives until the relay has been quiet for a while.
	received := 0
	buf := make([]byte, 2*size)
	for {
		if err := peer.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := peer.conn.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		received++
	}
	if received == burst {
		t.Fatalf("all %d datagrams of %d bytes were relayed at once with allocation_bandwidth=%d B/s", burst, size, limit)
	}
	if received == 0 {
		t.Errorf("nothing relayed: the first datagram fits within allocation_bandwidth=%d B/s", limit)
	}
	want := dropsBefore + float64(burst-received)
	if n, ok := r.waitMetric(t, func(v float64) bool { return v >= want }, []string{"drops"}, "reason=bandwidth"); !ok {
		t.Errorf("drops{reason=bandwidth} = %v after %d of %d datagrams were cut, want %v", n, burst-received, burst, want)
	}
}
