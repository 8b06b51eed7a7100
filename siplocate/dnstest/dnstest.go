// Package dnstest runs a real DNS server for tests: UDP and TCP on a
// loopback address and a random port, answering from a small zone the way
// a recursive resolver would (CNAME chains inside the zone are followed,
// unknown names get NXDOMAIN), with knobs that make it misbehave. Tests of
// siplocate, gather and the CLI point a siplocate.Resolver at Zone.Addr.
package dnstest

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is a running DNS server and the records it answers from.
type Zone struct {
	// Addr is the server's host:port, the same for UDP and TCP.
	Addr string

	mu       sync.Mutex
	rrs      []dns.RR
	queries  []string        // "udp SRV _sip._udp.example.test."
	truncate map[string]bool // answer these names with TC=1 over UDP
	rcode    map[string]int  // answer these names with this RCODE
	noChase  bool            // return only the first CNAME, like a non-recursive server
}

// Serve serves records (zone file lines such as
// "_turn._udp.example.test. SRV 0 5 3478 relay.example.test.") on host
// ("127.0.0.1" or "::1"). The test is skipped when host is not configured
// here; the servers stop when the test ends.
func Serve(t testing.TB, host string, records ...string) *Zone {
	t.Helper()
	z := &Zone{truncate: map[string]bool{}, rcode: map[string]int{}}
	z.Add(t, records...)
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

// Add adds records (zone file lines) to the zone.
func (z *Zone) Add(t testing.TB, records ...string) {
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

// Truncate makes UDP answers for name (fully qualified, lower case) come
// back empty with TC=1, so a client has to retry over TCP.
func (z *Zone) Truncate(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.truncate[name] = true
}

// SetRcode makes every answer for name carry rcode (e.g. dns.RcodeServerFailure).
func (z *Zone) SetRcode(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcode[name] = rcode
}

// NoChase makes the server return only the first CNAME of a chain, as a
// non-recursive server does.
func (z *Zone) NoChase() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.noChase = true
}

// Queries returns what was asked so far, in order, as "udp SRV name.".
func (z *Zone) Queries() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return slices.Clone(z.queries)
}

// ServeDNS answers one query from the zone.
func (z *Zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {

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
func (z *Zone) exists(name string) bool {
	for _, rr := range z.rrs {
		o := strings.ToLower(rr.Header().Name)
		if o == name || strings.HasSuffix(o, "."+name) {
			return true
		}
	}
	return false
}
