package siplocate_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zoneServer is a real DNS server on a loopback address and a random port
// (UDP and TCP), answering from a small zone the way a recursive resolver
// would: CNAME chains inside the zone are followed, unknown names get
// NXDOMAIN. Knobs make it misbehave.
type zoneServer struct {
	Addr string // host:port

	mu       sync.Mutex
	rrs      []dns.RR
	queries  []string        // "udp SRV _sip._udp.example.test."
	truncate map[string]bool // answer these names with TC=1 over UDP
	rcode    map[string]int  // answer these names with this RCODE
	noChase  bool            // return only the first CNAME, like a non-recursive server
}

// startZone serves records (zone file lines) on host ("127.0.0.1" or
// "::1"). The servers stop when the test ends.
func startZone(t *testing.T, host string, records ...string) *zoneServer {
	t.Helper()
	z := &zoneServer{truncate: map[string]bool{}, rcode: map[string]int{}}
	z.add(t, records...)
	var pc net.PacketConn
	var ln net.Listener
	for range 20 { // the UDP port must be free for TCP too
		p, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Skipf("no %s on this host: %v", host, err)
		}
		l, err := net.Listen("tcp", p.LocalAddr().String())
		if err == nil {
			pc, ln = p, l
			break
		}
		_ = p.Close()
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	z.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("DNS server did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return z
}

func (z *zoneServer) add(t *testing.T, records ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR("$TTL 60\n" + s)
		if err != nil || rr == nil {
			t.Fatalf("zone record %q: %v", s, err)
		}
		z.rrs = append(z.rrs, rr)
	}
}

// Queries returns what was asked so far, in order.
func (z *zoneServer) Queries() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return slices.Clone(z.queries)
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.queries = append(z.queries, fmt.Sprintf("%s %s %s", proto, dns.TypeToString[q.Qtype], name))
	if rc, ok := z.rcode[name]; ok {
		m.Rcode = rc
		_ = w.WriteMsg(m)
		return
	}
	if proto == "udp" && z.truncate[name] {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	cur := name
	for hop := 0; hop < 10; hop++ {
		var cname *dns.CNAME
		for _, rr := range z.rrs {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if len(m.Answer) > 0 || cname == nil {
			break
		}
		m.Answer = append(m.Answer, cname)
		if z.noChase {
			break
		}
		cur = strings.ToLower(cname.Target)
	}
	if len(m.Answer) == 0 && !z.exists(cur) {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// exists: the name owns records or is an empty non-terminal above some.
func (z *zoneServer) exists(name string) bool {
	for _, rr := range z.rrs {
		o := strings.ToLower(rr.Header().Name)
		if o == name || strings.HasSuffix(o, "."+name) {
			return true
		}
	}
	return false
}

// Fake source-address tables for RFC 6724 ordering of documentation
// addresses: nothing is sent to them, and no route is looked up.
var (
	src6 = netip.MustParseAddr("2001:db8::99")
	src4 = netip.MustParseAddr("192.0.2.99")
)

func dualStack(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return src4, true
	}
	return src6, true
}

func ipv6Only(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return netip.Addr{}, false
	}
	return src6, true
}

func ipv4Only(dst netip.Addr) (netip.Addr, bool) {
	if dst.Is4() {
		return src4, true
	}
	return netip.Addr{}, false
}

// silentUDP returns the address of a loopback UDP socket that reads and
// never answers: a DNS server that has died without ICMP.
func silentUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}
