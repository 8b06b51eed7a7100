package siplocate_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isthmusrelay/isthmus/siplocate/dnstest"
	"github.com/miekg/dns"

	"github.com/isthmusrelay/isthmus/siplocate"
)

// testZone holds one test domain per RFC rule exercised. Addresses are
// documentation ranges: these tests only look them up, never send to them.
var testZone = []string{
	// RFC 3263 §4.1 example: NAPTR to all three transports.
	`example.test. NAPTR 50 50 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
	`example.test. NAPTR 90 50 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
	`example.test. NAPTR 100 50 "s" "SIP+D2U" "" _sip._udp.example.test.`,
	`_sips._tcp.example.test. SRV 0 0 5061 sip1.example.test.`,
	`_sip._tcp.example.test. SRV 0 0 5060 sip1.example.test.`,
	`_sip._udp.example.test. SRV 0 0 5060 sip1.example.test.`,
	`_sip._udp.example.test. SRV 10 0 5070 sip2.example.test.`,
	`sip1.example.test. AAAA 2001:db8::1`,
	`sip1.example.test. A 192.0.2.1`,
	`sip2.example.test. A 192.0.2.2`,
	`example.test. A 192.0.2.100`,

	// No NAPTR: SRV per transport.
	`srv.example.test. A 192.0.2.200`,
	`_sip._udp.srv.example.test. SRV 0 0 5060 sip2.example.test.`,
	`_sip._tcp.srv.example.test. SRV 0 0 5062 sip1.example.test.`,

	// NAPTR records this client must skip, then SRV.
	`skip.example.test. NAPTR 10 10 "s" "SIP+D2S" "" _sip._sctp.skip.example.test.`,
	`skip.example.test. NAPTR 10 20 "s" "SIP+D2W" "" _sip._ws.skip.example.test.`,
	`skip.example.test. NAPTR 10 30 "u" "E2U+sip" "!^.*$!sip:x@example.test!" .`,
	`skip.example.test. NAPTR 10 40 "a" "SIP+D2U" "" sip2.example.test.`,
	`_sip._sctp.skip.example.test. SRV 0 0 5060 sip1.example.test.`,
	`_sip._udp.skip.example.test. SRV 0 0 5080 sip2.example.test.`,

	// Nothing but addresses.
	`plain.example.test. AAAA 2001:db8::10`,
	`plain.example.test. A 192.0.2.10`,
	`plain.example.test. AAAA 2001:db8::11`,
	`plain.example.test. A 192.0.2.11`,

	// RFC 2782: target "." — the service is decidedly not available.
	`dot.example.test. A 192.0.2.66`,
	`_sip._udp.dot.example.test. SRV 0 0 0 .`,
	`_sip._tcp.dot.example.test. SRV 0 0 0 .`,
	`_sips._tcp.dot.example.test. SRV 0 0 0 .`,
	// "." next to a real record: the real one is used.
	`_sip._udp.halfdot.example.test. SRV 0 0 0 .`,
	`_sip._udp.halfdot.example.test. SRV 1 0 5060 sip2.example.test.`,

	// Aliases.
	`alias.example.test. CNAME sip1.example.test.`,
	`alias2.example.test. CNAME alias.example.test.`,
	`_sip._udp.srvalias.example.test. SRV 0 0 5060 alias2.example.test.`,
	`loop1.example.test. CNAME loop2.example.test.`,
	`loop2.example.test. CNAME loop1.example.test.`,

	// TURN (RFC 5928) and STUN (RFC 8489 §8).
	`_turn._udp.turn.example.test. SRV 0 0 3478 relay.example.test.`,
	`_turn._tcp.turn.example.test. SRV 0 0 3479 relay.example.test.`,
	`_turns._tcp.turn.example.test. SRV 0 0 5349 relay.example.test.`,
	`_turns._tls.turn.example.test. SRV 0 0 9999 wrong.example.test.`,
	`relay.example.test. AAAA 2001:db8::3478`,
	`relay.example.test. A 192.0.2.78`,
	`turn.example.test. A 192.0.2.79`,
	`snaptr.example.test. NAPTR 10 10 "s" "RELAY:turn.tcp:turn.udp" "" _turn._x.snaptr.example.test.`,
	`snaptr.example.test. NAPTR 20 10 "s" "RELAY:turn.tls" "" _turns._tcp.turn.example.test.`,
	`_turn._x.snaptr.example.test. SRV 0 0 3480 relay.example.test.`,
	`_stun._udp.stun.example.test. SRV 0 0 3478 relay.example.test.`,
	`_stuns._tcp.stun.example.test. SRV 0 0 5349 relay.example.test.`,

	// An IPv6-only server.
	`v6.example.test. AAAA 2001:db8::6`,
}

// line renders a target as "udp [2001:db8::1]:5060 _sip._udp.example.test.".
func line(t siplocate.Target) string {
	from := t.SRV
	if from == "" {
		from = "-"
	}
	return t.Transport.String() + " " + t.AddrPort.String() + " " + from
}

func lines(ts []siplocate.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = line(t)
	}
	return out
}

func TestLocate(t *testing.T) {
	z := dnstest.Serve(t, "127.0.0.1", testZone...)
	tests := []struct {
		name     string
		uri      string
		source   func(netip.Addr) (netip.Addr, bool)
		want     []string
		wantErr  error
		notAsked []string // query types that must not be sent
	}{
		{
			name: "RFC3263 4.1: NAPTR order/preference decides the transports (TLS, TCP, UDP)",
			uri:  "sip:alice@example.test",
			want: []string{
				"tls [2001:db8::1]:5061 _sips._tcp.example.test.", "tls 192.0.2.1:5061 _sips._tcp.example.test.",
				"tcp [2001:db8::1]:5060 _sip._tcp.example.test.", "tcp 192.0.2.1:5060 _sip._tcp.example.test.",
				"udp [2001:db8::1]:5060 _sip._udp.example.test.", "udp 192.0.2.1:5060 _sip._udp.example.test.",
				"udp 192.0.2.2:5070 _sip._udp.example.test.",
			},
		},
		{
			name: "RFC3263 4.1: sips: keeps only SIPS+D2T, whose SRV is _sips._tcp",
			uri:  "sips:alice@example.test",
			want: []string{"tls [2001:db8::1]:5061 _sips._tcp.example.test.", "tls 192.0.2.1:5061 _sips._tcp.example.test."},
		},
		{
			name:     "RFC3263 4.1: transport= skips NAPTR and asks that one SRV",
			uri:      "sip:example.test;transport=tcp",
			want:     []string{"tcp [2001:db8::1]:5060 _sip._tcp.example.test.", "tcp 192.0.2.1:5060 _sip._tcp.example.test."},
			notAsked: []string{"NAPTR"},
		},
		{
			name: "RFC3263 4.1: sips: with transport=tcp is TLS over _sips._tcp",
			uri:  "sips:example.test;transport=tcp",
			want: []string{"tls [2001:db8::1]:5061 _sips._tcp.example.test.", "tls 192.0.2.1:5061 _sips._tcp.example.test."},
		},
		{
			name:     "RFC3263 4.2: explicit port means A/AAAA only, UDP for sip:",
			uri:      "sip:example.test:5099",
			want:     []string{"udp 192.0.2.100:5099 -"},
			notAsked: []string{"NAPTR", "SRV"},
		},
		{
			name:     "RFC3263 4.2: explicit port on sips: means TLS at that port",
			uri:      "sips:sip1.example.test:6000",
			want:     []string{"tls [2001:db8::1]:6000 -", "tls 192.0.2.1:6000 -"},
			notAsked: []string{"NAPTR", "SRV"},
		},
		{
			name:     "RFC3263 4.2: numeric IPv6 host needs no DNS",
			uri:      "sip:[2001:db8::5]",
			want:     []string{"udp [2001:db8::5]:5060 -"},
			notAsked: []string{"NAPTR", "SRV", "A", "AAAA"},
		},
		{
			name:     "RFC3263 4.2: numeric IPv4 host with sips: is TLS at 5061",
			uri:      "sips:192.0.2.5",
			want:     []string{"tls 192.0.2.5:5061 -"},
			notAsked: []string{"NAPTR", "SRV", "A", "AAAA"},
		},
		{
			name:     "RFC3263 4: maddr replaces the host as TARGET",
			uri:      "sip:bob@example.test;maddr=[2001:db8::77];transport=tcp",
			want:     []string{"tcp [2001:db8::77]:5060 -"},
			notAsked: []string{"NAPTR", "SRV", "A", "AAAA"},
		},
		{
			name: "RFC3263 4.1: no NAPTR, SRV for each supported transport in client order",
			uri:  "sip:srv.example.test",
			want: []string{"udp 192.0.2.2:5060 _sip._udp.srv.example.test.", "tcp [2001:db8::1]:5062 _sip._tcp.srv.example.test.", "tcp 192.0.2.1:5062 _sip._tcp.srv.example.test."},
		},
		{
			name: "RFC3263 4.1: NAPTR with unsupported services, flags or regexp are discarded, then SRV",
			uri:  "sip:skip.example.test",
			want: []string{"udp 192.0.2.2:5080 _sip._udp.skip.example.test."},
		},
		{
			name: "RFC3263 4.2: no SRV records, A/AAAA at 5060 over UDP",
			uri:  "sip:plain.example.test",
			want: []string{"udp [2001:db8::10]:5060 -", "udp 192.0.2.10:5060 -", "udp [2001:db8::11]:5060 -", "udp 192.0.2.11:5060 -"},
		},
		{
			name: "RFC3263 4.2: no SRV records, sips: uses TLS at 5061",
			uri:  "sips:plain.example.test",
			want: []string{"tls [2001:db8::10]:5061 -", "tls 192.0.2.10:5061 -", "tls [2001:db8::11]:5061 -", "tls 192.0.2.11:5061 -"},
		},
		{
			name:   "RFC6724 rule 1: an IPv6-only host tries every AAAA before any A",
			uri:    "sip:plain.example.test",
			source: ipv6Only,
			want:   []string{"udp [2001:db8::10]:5060 -", "udp [2001:db8::11]:5060 -", "udp 192.0.2.10:5060 -", "udp 192.0.2.11:5060 -"},
		},
		{
			name:   "RFC6724 rule 1: an IPv4-only host tries every A before any AAAA",
			uri:    "sip:plain.example.test",
			source: ipv4Only,
			want:   []string{"udp 192.0.2.10:5060 -", "udp 192.0.2.11:5060 -", "udp [2001:db8::10]:5060 -", "udp [2001:db8::11]:5060 -"},
		},
		{
			name:    "RFC2782: SRV target \".\" means not available, no A fallback",
			uri:     "sip:dot.example.test",
			wantErr: siplocate.ErrUnavailable,
		},
		{
			name: "RFC2782: a \".\" record next to a real one is skipped",
			uri:  "sip:halfdot.example.test;transport=udp",
			want: []string{"udp 192.0.2.2:5060 _sip._udp.halfdot.example.test."},
		},
		{
			name:    "NXDOMAIN everywhere is ErrNotFound",
			uri:     "sip:nowhere.example.test",
			wantErr: siplocate.ErrNotFound,
		},
		{
			name: "CNAME chain of an SRV target is followed",
			uri:  "sip:srvalias.example.test;transport=udp",
			want: []string{"udp [2001:db8::1]:5060 _sip._udp.srvalias.example.test.", "udp 192.0.2.1:5060 _sip._udp.srvalias.example.test."},
		},
		{
			name:    "CNAME loop is an error, not a hang",
			uri:     "sip:loop1.example.test:5060",
			wantErr: siplocate.ErrDNS,
		},
		{
			name: "RFC5928 3: turn: without port asks _turn._udp and _turn._tcp",
			uri:  "turn:turn.example.test",
			want: []string{
				"udp [2001:db8::3478]:3478 _turn._udp.turn.example.test.", "udp 192.0.2.78:3478 _turn._udp.turn.example.test.",
				"tcp [2001:db8::3478]:3479 _turn._tcp.turn.example.test.", "tcp 192.0.2.78:3479 _turn._tcp.turn.example.test.",
			},
		},
		{
			name: "RFC5928 3: turns: asks _turns._tcp (never _turns._tls)",
			uri:  "turns:turn.example.test",
			want: []string{"tls [2001:db8::3478]:5349 _turns._tcp.turn.example.test.", "tls 192.0.2.78:5349 _turns._tcp.turn.example.test."},
		},
		{
			name: "RFC5928 3: ?transport=tcp narrows to _turn._tcp",
			uri:  "turn:turn.example.test?transport=tcp",
			want: []string{"tcp [2001:db8::3478]:3479 _turn._tcp.turn.example.test.", "tcp 192.0.2.78:3479 _turn._tcp.turn.example.test."},
		},
		{
			name:     "RFC5928 3: turn: with a port is A/AAAA only",
			uri:      "turn:turn.example.test:3478?transport=udp",
			want:     []string{"udp 192.0.2.79:3478 -"},
			notAsked: []string{"NAPTR", "SRV"},
		},
		{
			name:   "RFC5928 3 + RFC6724: IPv6-only agent gets the AAAA of the SRV target first",
			uri:    "turn:turn.example.test?transport=udp",
			source: ipv6Only,
			want:   []string{"udp [2001:db8::3478]:3478 _turn._udp.turn.example.test.", "udp 192.0.2.78:3478 _turn._udp.turn.example.test."},
		},
		{
			name: "RFC5928 3 / RFC3958: S-NAPTR RELAY with several protocols, then the next order",
			uri:  "turn:snaptr.example.test",
			want: []string{
				"udp [2001:db8::3478]:3480 _turn._x.snaptr.example.test.", "udp 192.0.2.78:3480 _turn._x.snaptr.example.test.",
				"tcp [2001:db8::3478]:3480 _turn._x.snaptr.example.test.", "tcp 192.0.2.78:3480 _turn._x.snaptr.example.test.",
			},
		},
		{
			name: "RFC8489 8: stun: asks _stun._udp (and _stun._tcp)",
			uri:  "stun:stun.example.test",
			want: []string{"udp [2001:db8::3478]:3478 _stun._udp.stun.example.test.", "udp 192.0.2.78:3478 _stun._udp.stun.example.test."},
		},
		{
			name: "RFC8489 8: stuns: asks _stuns._tcp",
			uri:  "stuns:stun.example.test",
			want: []string{"tls [2001:db8::3478]:5349 _stuns._tcp.stun.example.test.", "tls 192.0.2.78:5349 _stuns._tcp.stun.example.test."},
		},
		{
			name:   "IPv6-only server name for an IPv4-only client: listed, but last",
			uri:    "stun:v6.example.test",
			source: ipv4Only,
			want:   []string{"udp [2001:db8::6]:3478 -", "tcp [2001:db8::6]:3478 -"},
		},
		{
			name:    "bad URI",
			uri:     "sip:exa mple.test",
			wantErr: siplocate.ErrBadURI,
		},
		{
			name:    "RFC5630: sips: over UDP is refused",
			uri:     "sips:example.test;transport=udp",
			wantErr: siplocate.ErrUnsupportedTransport,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.source
			if src == nil {
				src = dualStack
			}
			r := &siplocate.Resolver{Server: z.Addr, SourceAddr: src, Timeout: time.Second}
			before := len(z.Queries())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ts, err := r.Locate(ctx, tt.uri)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Locate(%q) = %v, %v; want error %v", tt.uri, lines(ts), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Locate(%q): %v", tt.uri, err)
			}
			if got := lines(ts); !slices.Equal(got, tt.want) {
				t.Errorf("Locate(%q):\n got  %s\n want %s", tt.uri, strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			for _, q := range z.Queries()[before:] {
				if strings.Contains(q, "._tls.") {
					t.Errorf("query %q: there is no _tls SRV label; TLS is _sips._tcp/_turns._tcp", q)
				}
				for _, no := range tt.notAsked {
					if strings.Fields(q)[1] == no {
						t.Errorf("query %q sent; %s must not be asked", q, no)
					}
				}
			}
		})
	}
}

// TestLocateTransports: the client's transport list filters and orders.
func TestLocateTransports(t *testing.T) {
	z := dnstest.Serve(t, "127.0.0.1", testZone...)
	r := &siplocate.Resolver{Server: z.Addr, SourceAddr: ipv6Only, Transports: []siplocate.Transport{siplocate.TCP}}
	ts, err := r.Locate(context.Background(), "sip:srv.example.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tcp [2001:db8::1]:5062 _sip._tcp.srv.example.test.", "tcp 192.0.2.1:5062 _sip._tcp.srv.example.test."}
	if got := lines(ts); !slices.Equal(got, want) {
		t.Errorf("TCP-only client: got %v, want %v", got, want)
	}
	_, err = r.Locate(context.Background(), "sip:srv.example.test;transport=udp")
	if !errors.Is(err, siplocate.ErrUnsupportedTransport) {
		t.Errorf("transport=udp on a TCP-only client: %v, want ErrUnsupportedTransport", err)
	}
}

// TestLocateTruncatedRetriesOverTCP: RFC 7766 §5, a TC=1 answer over UDP is
// asked again over TCP.
func TestLocateTruncatedRetriesOverTCP(t *testing.T) {
	z := dnstest.Serve(t, "::1", testZone...)
	z.Truncate("_sip._udp.srv.example.test.")
	r := &siplocate.Resolver{Server: z.Addr, SourceAddr: dualStack}
	ts, err := r.Locate(context.Background(), "sip:srv.example.test;transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"udp 192.0.2.2:5060 _sip._udp.srv.example.test."}; !slices.Equal(lines(ts), want) {
		t.Errorf("got %v, want %v", lines(ts), want)
	}
	if !slices.Contains(z.Queries(), "tcp SRV _sip._udp.srv.example.test.") {
		t.Errorf("no TCP retry after TC; queries: %v", z.Queries())
	}
}

// TestLocateNonRecursiveCNAME: a server that returns only the CNAME gets a
// second query for the alias target.
func TestLocateNonRecursiveCNAME(t *testing.T) {
	z := dnstest.Serve(t, "127.0.0.1", testZone...)
	z.NoChase()
	r := &siplocate.Resolver{Server: z.Addr, SourceAddr: dualStack}
	ts, err := r.Locate(context.Background(), "sip:alias2.example.test:5060")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"udp [2001:db8::1]:5060 -", "udp 192.0.2.1:5060 -"}; !slices.Equal(lines(ts), want) {
		t.Errorf("got %v, want %v", lines(ts), want)
	}
	if !slices.Contains(z.Queries(), "udp AAAA sip1.example.test.") {
		t.Errorf("alias target not asked; queries: %v", z.Queries())
	}
}

// TestLocateServerFailure: SERVFAIL is ErrDNS, with the server named.
func TestLocateServerFailure(t *testing.T) {
	z := dnstest.Serve(t, "127.0.0.1", testZone...)
	z.SetRcode("plain.example.test.", dns.RcodeServerFailure)
	r := &siplocate.Resolver{Server: z.Addr, SourceAddr: dualStack}
	_, err := r.Locate(context.Background(), "sip:plain.example.test:5060")
	if !errors.Is(err, siplocate.ErrDNS) || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Fatalf("got %v, want ErrDNS naming SERVFAIL", err)
	}
}

// TestLocateTimeout: a server that never answers costs Timeout per query,
// and the error says timeout.
func TestLocateTimeout(t *testing.T) {
	pc := silentUDP(t)
	r := &siplocate.Resolver{Server: pc, Timeout: 100 * time.Millisecond, SourceAddr: dualStack}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.Locate(ctx, "sip:example.test")
	if !errors.Is(err, siplocate.ErrDNS) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v, want ErrDNS with a timeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Locate ran into the test's 5 s bound: per-query Timeout not applied")
	}
}

// TestLocateContextCancel: a cancelled context ends Locate with its error.
func TestLocateContextCancel(t *testing.T) {
	pc := silentUDP(t)
	r := &siplocate.Resolver{Server: pc, Timeout: time.Minute, SourceAddr: dualStack}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := r.Locate(ctx, "sip:example.test")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

func TestLocateResolvConf(t *testing.T) {
	dir := t.TempDir()
	r := &siplocate.Resolver{ResolvConf: dir + "/missing"}
	if _, err := r.Locate(context.Background(), "sip:example.test"); !errors.Is(err, siplocate.ErrDNS) {
		t.Errorf("missing resolv.conf: %v, want ErrDNS", err)
	}
}

func TestIteratorFailover(t *testing.T) {
	z := dnstest.Serve(t, "127.0.0.1", testZone...)
	r := &siplocate.Resolver{Server: z.Addr, SourceAddr: ipv6Only}
	it, err := r.Iterate(context.Background(), "sip:example.test;transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	for tg, ok := it.Current(); ok; tg, ok = it.Next() {
		tried = append(tried, tg.AddrPort.String())
		if it.Remaining() == 1 {
			break // pretend the last one answered 200
		}
	}
	want := []string{"[2001:db8::1]:5060", "192.0.2.1:5060", "192.0.2.2:5070"}
	if !slices.Equal(tried, want) {
		t.Fatalf("tried %v, want %v", tried, want)
	}
	if tg, _ := it.Current(); tg.AddrPort.String() != "192.0.2.2:5070" {
		t.Errorf("after success Current = %v, want to stay on the working target", tg)
	}
	if _, ok := it.Next(); ok {
		t.Error("Next past the end returned a target")
	}
	if _, ok := it.Next(); ok || it.Remaining() != 0 {
		t.Error("exhausted iterator must stay exhausted")
	}
}
