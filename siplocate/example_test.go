package siplocate_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/isthmusrelay/isthmus/siplocate"
)

// exampleDNS serves records on a loopback UDP port until stop is called.
func exampleDNS(records ...string) (addr string, stop func()) {
	var rrs []dns.RR
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		rrs = append(rrs, rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, rr := range rrs {
			if q := req.Question[0]; strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	return pc.LocalAddr().String(), func() { _ = srv.Shutdown() }
}

// An IPv6-only phone locates its TURN server from "turn:example.org"
// (RFC 5928): SRV per transport, then the SRV target's AAAA before its A,
// which the phone cannot reach.
func ExampleResolver_Locate() {
	server, stop := exampleDNS(
		"_turn._udp.example.org. 60 IN SRV 10 0 3478 relay.example.org.",
		"_turn._tcp.example.org. 60 IN SRV 10 0 3478 relay.example.org.",
		"relay.example.org. 60 IN A 192.0.2.1",
		"relay.example.org. 60 IN AAAA 2001:db8::1",
	)
	defer stop()

	r := &siplocate.Resolver{
		Server: server,
		// Pretend to be IPv6-only; left nil, the kernel's routes decide.
		SourceAddr: func(dst netip.Addr) (netip.Addr, bool) {
			return netip.MustParseAddr("2001:db8::10"), dst.Is6()
		},
	}
	targets, err := r.Locate(context.Background(), "turn:example.org")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range targets {
		fmt.Println(t)
	}
	// Output:
	// udp [2001:db8::1]:3478 SRV _turn._udp.example.org. 10 0 relay.example.org.
	// udp 192.0.2.1:3478 SRV _turn._udp.example.org. 10 0 relay.example.org.
	// tcp [2001:db8::1]:3478 SRV _turn._tcp.example.org. 10 0 relay.example.org.
	// tcp 192.0.2.1:3478 SRV _turn._tcp.example.org. 10 0 relay.example.org.
}

// A UDP client fails over one transaction at a time (RFC 3263 §4.3): after
// a timeout or a 503 it sends the request again to the next target.
func ExampleIterator() {
	it := siplocate.NewIterator([]siplocate.Target{
		{Transport: siplocate.UDP, AddrPort: netip.MustParseAddrPort("[2001:db8::1]:5060")},
		{Transport: siplocate.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")},
	})
	send := func(t siplocate.Target) int { // stands in for a SIP transaction
		if t.AddrPort.Addr().Is6() {
			return 503
		}
		return 200
	}
	for t, ok := it.Current(); ok; t, ok = it.Next() {
		status := send(t)
		fmt.Println(t.AddrPort, status)
		if status != 503 {
			break
		}
	}
	// Output:
	// [2001:db8::1]:5060 503
	// 192.0.2.1:5060 200
}
