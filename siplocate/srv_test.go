package siplocate

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func srvRR(t testing.TB, s string) *dns.SRV {
	t.Helper()
	rr, err := dns.NewRR("_sip._udp.example.test. 60 IN SRV " + s)
	if err != nil {
		t.Fatal(err)
	}
	return rr.(*dns.SRV)
}

func seeded(seed uint64) func(uint32) uint32 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(n uint32) uint32 { return r.Uint32N(n) }
}

func TestOrderSRVPriority(t *testing.T) {
	recs := []*dns.SRV{srvRR(t, "20 5 5060 b.example.test."), srvRR(t, "10 0 5060 a.example.test."), srvRR(t, "30 99 5060 c.example.test."), srvRR(t, "10 50 5060 a2.example.test.")}
	for seed := range uint64(50) {
		got := orderSRV(recs, seeded(seed))
		var prios []uint16
		for _, r := range got {
			prios = append(prios, r.Priority)
		}
		if !slices.Equal(prios, []uint16{10, 10, 20, 30}) {
			t.Fatalf("RFC2782: lowest priority first, always; got %v", prios)
		}
	}
}

// TestOrderSRVWeights checks the RFC 2782 weighted selection by its
// frequencies: with a fixed seed the counts are reproducible, and the
// tolerances are several standard deviations wide.
func TestOrderSRVWeights(t *testing.T) {
	const runs = 20000
	tests := []struct {
		name      string
		recs      []string
		wantFirst map[string]float64 // target -> expected share of first place
	}{
		{
			name:      "RFC2782: weight 90 is first about 90% of the time against weight 10",
			recs:      []string{"0 10 5060 light.example.test.", "0 90 5060 heavy.example.test."},
			wantFirst: map[string]float64{"heavy.example.test.": 91.0 / 101, "light.example.test.": 10.0 / 101},
		},
		{
			name:      "RFC2782: weight 0 has a very small chance against a weighted record",
			recs:      []string{"0 100 5060 w.example.test.", "0 0 5060 zero.example.test."},
			wantFirst: map[string]float64{"zero.example.test.": 1.0 / 101, "w.example.test.": 100.0 / 101},
		},
		{
			name:      "RFC2782: all weights 0 share first place evenly",
			recs:      []string{"0 0 5060 a.example.test.", "0 0 5060 b.example.test.", "0 0 5060 c.example.test."},
			wantFirst: map[string]float64{"a.example.test.": 1.0 / 3, "b.example.test.": 1.0 / 3, "c.example.test.": 1.0 / 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []*dns.SRV
			for _, s := range tt.recs {
				recs = append(recs, srvRR(t, s))
			}
			first := map[string]int{}
			intn := seeded(7)
			for range runs {
				got := orderSRV(recs, intn)
				if len(got) != len(recs) {
					t.Fatalf("lost records: %v", got)
				}
				first[got[0].Target]++
			}
			for target, want := range tt.wantFirst {
				share := float64(first[target]) / runs
				if d := share - want; d > 0.015 || d < -0.015 {
					t.Errorf("%s first in %.3f of runs, want %.3f", target, share, want)
				}
			}
		})
	}
}

func TestToSRVSetDot(t *testing.T) {
	tests := []struct {
		name        string
		recs        []string
		want        []string
		unavailable bool
	}{
		{"RFC2782: a lone \".\" target means the service is decidedly not available", []string{"0 0 0 ."}, nil, true},
		{"RFC2782: \".\" among real targets is skipped", []string{"0 0 0 .", "1 0 5060 sip.example.test."}, []string{"sip.example.test."}, false},
		{"no SRV records is not \"unavailable\" (A/AAAA fallback applies)", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rrs []dns.RR
			for _, s := range tt.recs {
				rrs = append(rrs, srvRR(t, s))
			}
			set := toSRVSet(rrs, seeded(1))
			var got []string
			for _, r := range set.records {
				got = append(got, r.Target)
			}
			if !slices.Equal(got, tt.want) || set.unavailable != tt.unavailable {
				t.Errorf("got %v unavailable=%v, want %v unavailable=%v", got, set.unavailable, tt.want, tt.unavailable)
			}
		})
	}
	var many []dns.RR
	for range maxSRVPerName + 10 {
		many = append(many, srvRR(t, "0 1 5060 x.example.test."))
	}
	if n := len(toSRVSet(many, seeded(1)).records); n != maxSRVPerName {
		t.Errorf("%d SRV records kept, want the cap %d", n, maxSRVPerName)
	}
}

func msgOf(t testing.TB, rrs ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

// TestChaseOddAnswers: what a server sends is checked against the question.
func TestChaseOddAnswers(t *testing.T) {
	tests := []struct {
		name    string
		answer  []string
		want    []string // A addresses
		end     string
		wantErr bool
	}{
		{"records of another owner are ignored", []string{"other.example.test. 60 IN A 192.0.2.9", "q.example.test. 60 IN A 192.0.2.1"}, []string{"192.0.2.1"}, "q.example.test.", false},
		{"only foreign records: empty", []string{"other.example.test. 60 IN A 192.0.2.9"}, nil, "q.example.test.", false},
		{"CNAME chain in any order", []string{"b.example.test. 60 IN A 192.0.2.2", "a.example.test. 60 IN CNAME b.example.test.", "q.example.test. 60 IN CNAME a.example.test."}, []string{"192.0.2.2"}, "b.example.test.", false},
		{"CNAME to a name not answered: end of chain reported for a re-query", []string{"q.example.test. 60 IN CNAME elsewhere.example.test."}, nil, "elsewhere.example.test.", false},
		{"CNAME loop is an error", []string{"q.example.test. 60 IN CNAME a.example.test.", "a.example.test. 60 IN CNAME q.example.test."}, nil, "", true},
		{"owner names compare case-insensitively", []string{"Q.Example.TEST. 60 IN A 192.0.2.3"}, []string{"192.0.2.3"}, "q.example.test.", false},
		{"class CH records are ignored", []string{"q.example.test. 60 CH A 192.0.2.4"}, nil, "q.example.test.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rrs, end, err := chase(msgOf(t, tt.answer...), "q.example.test.", dns.TypeA, map[string]bool{"q.example.test.": true})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			var got []string
			for _, rr := range rrs {
				got = append(got, rr.(*dns.A).A.String())
			}
			if !slices.Equal(got, tt.want) || !strings.EqualFold(end, tt.end) {
				t.Errorf("got %v at %s, want %v at %s", got, end, tt.want, tt.end)
			}
		})
	}
}

func TestUsableNAPTRs(t *testing.T) {
	rrs := msgOf(t,
		`e.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.e.test.`,
		`e.test. 60 IN NAPTR 10 20 "S" "sip+d2t" "" _sip._tcp.e.test.`, // case-insensitive
		`e.test. 60 IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.e.test.`,
		`e.test. 60 IN NAPTR 5 10 "s" "SIP+D2S" "" _sip._sctp.e.test.`,              // unsupported
		`e.test. 60 IN NAPTR 5 10 "s" "SIP+D2U" "!^.*$!x!" .`,                       // regexp: not RFC 3263
		`e.test. 60 IN NAPTR 5 10 "" "SIP+D2U" "" _sip._udp.e.test.`,                // non-terminal flag
		`e.test. 60 IN NAPTR 5 10 "s" "SIP+D2U" "" .`,                               // no replacement
		`e.test. 60 IN NAPTR 1 1 "s" "RELAY:turn.udp" "" _turn._udp.e.test.`).Answer // other application
	got := usableNAPTRs(rrs, services[SchemeSIP], discardLogger)
	var order []string
	for _, n := range got {
		order = append(order, n.sv.transport.String())
	}
	if want := []string{"tls", "tcp", "udp"}; !slices.Equal(order, want) {
		t.Errorf("RFC3263 4.1: got %v, want %v (order, then preference)", order, want)
	}
	if got := usableNAPTRs(rrs, services[SchemeSIPS], discardLogger); len(got) != 1 || got[0].sv.transport != TLS {
		t.Errorf("RFC3263 4.1: sips: keeps only SIPS+D2T, got %v", got)
	}
}
