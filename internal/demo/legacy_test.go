package demo

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestLegacySDPRoundTrip(t *testing.T) {
	for _, local := range []string{"192.0.2.20:40000", "[2001:db8::10]:5004"} {
		ap := netip.MustParseAddrPort(local)
		b, err := legacySDP(ap, 42)
		if err != nil {
			t.Fatal(err)
		}
		netType := "IP4"
		if ap.Addr().Is6() {
			netType = "IP6"
		}
		if !strings.Contains(string(b), "c=IN "+netType+" "+ap.Addr().String()+"\r\n") ||
			!strings.Contains(string(b), "m=audio "+strings.TrimPrefix(local[strings.LastIndexByte(local, ':'):], ":")+" RTP/AVP 0\r\n") {
			t.Errorf("legacy SDP for %s:\n%s", local, b)
		}
		if strings.Contains(string(b), "a=ice-") || strings.Contains(string(b), "a=candidate") {
			t.Errorf("legacy SDP has ICE attributes:\n%s", b)
		}
		got, err := legacyRemote(b)
		if err != nil || got != ap {
			t.Errorf("legacyRemote(own SDP for %s) = %s, %v", local, got, err)
		}
	}
}

func TestLegacyRemote(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
	for _, tc := range []struct {
		name string
		sdp  string
		want string // "" = error
	}{
		{"media-level c= wins", head + "c=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n", "192.0.2.1:5000"},
		{"session-level c= inherited", head + "c=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", "192.0.2.9:5000"},
		{"IPv6", head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP6 2001:db8::10\r\n", "[2001:db8::10]:5000"},
		{"video skipped, audio used", head + "c=IN IP4 192.0.2.9\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\nm=audio 5000 RTP/AVP 0\r\n", "192.0.2.9:5000"},
		{"rejected audio (port 0)", head + "c=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n", ""},
		{"no c= at all", head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", ""},
		{"c= address of the wrong family", head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 2001:db8::1\r\n", ""},
		{"c= with a name", head + "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP6 unspecified.invalid\r\n", ""},
	} {
		got, err := legacyRemote([]byte(tc.sdp))
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: got %s, want an error", tc.name, got)
		case tc.want == "" && !errors.Is(err, ErrNoMediaAddress):
			t.Errorf("%s: error %v does not wrap ErrNoMediaAddress", tc.name, err)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("%s: got %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestParseKernelCounters(t *testing.T) {
	snmp := []byte("Ip: Forwarding DefaultTTL\nIp: 2 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 1010 2 0 1012 0\n" +
		"UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n")
	m, err := parseSnmpTable(snmp, "Udp")
	if err != nil || m["InDatagrams"] != 1010 || m["OutDatagrams"] != 1012 {
		t.Errorf("Udp table: %v %v", m, err)
	}
	if _, err := parseSnmpTable([]byte("Udp: InDatagrams OutDatagrams\nUdp: 1\n"), "Udp"); err == nil {
		t.Error("short value line accepted")
	}
	if _, err := parseSnmpTable(snmp, "Tcp"); err == nil {
		t.Error("missing table accepted")
	}
	m6 := parseSnmp6([]byte("Ip6InReceives   7\nUdp6InDatagrams 1010\nUdp6OutDatagrams                1002\n"))
	if m6["Udp6InDatagrams"] != 1010 || m6["Udp6OutDatagrams"] != 1002 {
		t.Errorf("snmp6: %v", m6)
	}
	// Kernels before 6.3 have no OutTransmits: OutRequests stands in.
	if v, ok := firstCounter(map[string]uint64{"OutRequests": 5, "OutTransmits": 7}, "OutTransmits", "OutRequests"); !ok || v != 7 {
		t.Errorf("firstCounter with both = %d, %v; want OutTransmits 7", v, ok)
	}
	if v, ok := firstCounter(map[string]uint64{"OutRequests": 5}, "OutTransmits", "OutRequests"); !ok || v != 5 {
		t.Errorf("firstCounter without OutTransmits = %d, %v; want OutRequests 5", v, ok)
	}
	if _, ok := firstCounter(map[string]uint64{}, "OutTransmits", "OutRequests"); ok {
		t.Error("firstCounter found a counter in an empty table")
	}
	d := KernelCounters{In4: 10, Out4: 20, In6: 30, Out6: 40}.Sub(KernelCounters{In4: 1, Out4: 2, In6: 3, Out6: 4})
	if d != (KernelCounters{9, 18, 27, 36}) {
		t.Errorf("Sub: %+v", d)
	}
}
