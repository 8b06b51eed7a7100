package demo

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// legacyCallResult is a finished scenario 2 as the orchestrator records it:
// legacy4 offered plain IPv4, ua6 answered with its relayed IPv4 address.
func legacyCallResult() *Result {
	offer, err := legacySDP(netip.MustParseAddrPort("192.0.2.20:40388"), 1)
	if err != nil {
		panic(err) // a fixed, valid input
	}
	const answer = "v=0\r\no=- 7 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 51329 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	full := Stats{ProbesSent: 500, EchoesSent: 500, ProbesReceived: 500, EchoesReceived: 500,
		RTTp50: 486 * time.Microsecond, RTTp99: 2100 * time.Microsecond, RTTMax: 4 * time.Millisecond}
	var sc Scenario
	for _, s := range Scenarios() {
		if s.ID == "2" {
			sc = s
		}
	}
	r := &Result{
		Scenario: sc, Packets: 500, Offer: string(offer), Answer: answer,
		Offerer: EndpointResult{Side: sc.Offerer, Stats: full, Path: Path{
			Local:  Candidate{Type: "plain", Addr: "192.0.2.20:40388", Family: "IPv4"},
			Remote: Candidate{Type: "plain", Addr: "192.0.2.1:51329", Family: "IPv4"},
		}},
		Answerer: EndpointResult{Side: sc.Answerer, Stats: full, Path: Path{
			Local:  Candidate{Type: "relay", Addr: "192.0.2.1:51329", Family: "IPv4"},
			Remote: Candidate{Type: "plain", Addr: "192.0.2.20:40388", Family: "IPv4"},
			Server: "[2001:db8::1]:3478",
		}},
		RelayKernel:  KernelCounters{In4: 1000, Out4: 1000, In6: 1002, Out6: 1002},
		RelayMetrics: &RelayPackets{ToPeer4: 1000, FromPeer4: 1000},
	}
	return r
}

func runChecks(r *Result) {
	r.Checks = nil
	checkCommon(r)
	r.Scenario.Expect(r)
}

func failedChecks(r *Result) []string {
	var names []string
	for _, c := range r.Checks {
		if !c.OK {
			names = append(names, c.Name)
		}
	}
	return names
}

func TestChecksPassOnAGoodCall(t *testing.T) {
	r := legacyCallResult()
	runChecks(r)
	if !r.Passed() {
		t.Errorf("good call failed: %v", failedChecks(r))
	}
}

// Every check must be able to fail: break one thing at a time.
func TestChecksCatchFaults(t *testing.T) {
	for _, tc := range []struct {
		name      string
		breakIt   func(r *Result)
		wantCheck string
	}{
		{"one probe lost on the way to ua6", func(r *Result) { r.Answerer.Stats.ProbesReceived-- }, "RTP offerer -> answerer: 0 loss"},
		{"one echo lost on the way back", func(r *Result) { r.Offerer.Stats.EchoesReceived-- }, "RTP answerer -> offerer: 0 loss"},
		{"send error", func(r *Result) { r.Answerer.Stats.SendErrors = 1 }, "RTP answerer -> offerer: 0 loss"},
		{"no RTT", func(r *Result) { r.Offerer.Stats.RTTp50 = 0 }, "legacy4: a round trip for every probe"},
		{"stray packets", func(r *Result) { r.Answerer.Stats.Invalid = 3 }, "ua6: no stray or duplicate packets"},
		{"relay saw too little IPv6", func(r *Result) { r.RelayKernel.In6 = 999 }, "kernel: relay namespace moved the media in both families"},
		{"relay metrics missed packets", func(r *Result) { r.RelayMetrics.FromPeer4 = 10 }, "relay metrics: relayed packets counted as IPv4"},
		{"answer switched to IP6", func(r *Result) {
			r.Answer = strings.ReplaceAll(r.Answer, "c=IN IP4 192.0.2.1", "c=IN IP6 2001:db8::1")
		}, "RFC 6157 4.1 rule 2: answer c= keeps the offer's IP4, with ua6's relayed address"},
		{"ua6 answered with a host address", func(r *Result) { r.Answerer.Path.Local.Type = "host" }, "ua6 relays to the legacy phone without ICE"},
		{"legacy sends elsewhere", func(r *Result) { r.Offerer.Path.Remote.Addr = "192.0.2.1:1" }, "legacy phone sends to the relayed address of the answer"},
	} {
		r := legacyCallResult()
		tc.breakIt(r)
		runChecks(r)
		failed := failedChecks(r)
		found := false
		for _, f := range failed {
			found = found || f == tc.wantCheck
		}
		if !found || r.Passed() {
			t.Errorf("%s: failed checks %q, want %q among them", tc.name, failed, tc.wantCheck)
		}
	}
}

func TestPathSummary(t *testing.T) {
	r := legacyCallResult()
	if got, want := pathSummary(r), "legacy4 -IPv4-> relay -IPv6-> ua6"; got != want {
		t.Errorf("legacy call: %q, want %q", got, want)
	}
	r.Offerer.Host, r.Answerer.Host = HostDS1, HostDS2
	r.Offerer.Path = Path{ICE: true, Local: Candidate{Type: "host", Addr: "[2001:db8::31]:1", Family: "IPv6"}, Remote: Candidate{Type: "host", Addr: "[2001:db8::32]:2", Family: "IPv6"}}
	r.Answerer.Path = Path{ICE: true, Local: r.Offerer.Path.Remote, Remote: r.Offerer.Path.Local}
	if got, want := pathSummary(r), "ds1 -IPv6-> ds2"; got != want {
		t.Errorf("direct call: %q, want %q", got, want)
	}
}

func ExampleWriteTable() {
	r := legacyCallResult()
	runChecks(r)
	_ = WriteTable(os.Stdout, []*Result{r})
	// Output:
	// SCENARIO                                  RELAY    PATH                               PAIR                  SENT  RECV  LOSS  RTT p50  RTT p99  RESULT
	// 2 legacy4 offers plain IPv4, ua6 answers  isthmus  legacy4 -IPv4-> relay -IPv6-> ua6  plain/relay (no ICE)  2000  2000  0.0%  486µs    2.1ms    PASS
}

func ExampleWritePicture() {
	r := legacyCallResult()
	WritePicture(os.Stdout, r)
	// Output:
	// scenario 2: legacy4 offers plain IPv4, ua6 answers (relay: isthmus)
	//
	// legacy4 192.0.2.20                  relay 192.0.2.1 | 2001:db8::1                           ua6 2001:db8::10
	// |                                                 |                                                 |
	// |                                                 |<--- Allocate over IPv6 to [2001:db8::1]:3478 ---|
	// |                                                 |---------- relayed IPv4 192.0.2.1:51329 -------->|
	// |-------------------------------- offer  c=IN IP4 192.0.2.20 m=40388 ------------------------------>|  SDP via signalling
	// |<------------------------------- answer c=IN IP4 192.0.2.1 m=51329 --------------------------------|  SDP via signalling
	// |------ 192.0.2.20:40388 -> 192.0.2.1:51329 ----->|                                                 |
	// |                                                 |------- [2001:db8::1]:3478 -> 2001:db8::10 ----->|  1000 RTP -> 1000
	// |                                                 |<------ 2001:db8::10 -> [2001:db8::1]:3478 ------|
	// |<----- 192.0.2.1:51329 -> 192.0.2.20:40388 ------|                                                 |  1000 RTP <- 1000
	// |                                                 |                                                 |
}
