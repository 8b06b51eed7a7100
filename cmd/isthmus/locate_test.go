package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/isthmusrelay/isthmus/siplocate/dnstest"
)

// locateDNS serves a zone on loopback for the test's lifetime. Its answers
// are loopback too: the CLI asks the kernel for a route to each (RFC 6724
// sources), which must stay on this host.
func locateDNS(t *testing.T, records ...string) string {
	return dnstest.Serve(t, "127.0.0.1", records...).Addr
}

var locateZone = []string{
	`example.test. NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
	`example.test. NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.example.test.`,
	`_sips._tcp.example.test. SRV 0 5 5061 box.example.test.`,
	`_sip._udp.example.test. SRV 0 5 5060 box.example.test.`,
	`box.example.test. AAAA ::1`,
	`box.example.test. A 127.0.0.1`,
}

func TestLocateCLI(t *testing.T) {
	srv := locateDNS(t, locateZone...)
	var out, errb bytes.Buffer
	if code := dispatch([]string{"locate", "sip:alice@example.test", "--dns", srv}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := []string{
		`tls  ::1        5061  NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.example.test. -> SRV _sips._tcp.example.test. 0 5 box.example.test.`,
		`tls  127.0.0.1  5061  NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.example.test. -> SRV _sips._tcp.example.test. 0 5 box.example.test.`,
		`udp  ::1        5060  NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.example.test. -> SRV _sip._udp.example.test. 0 5 box.example.test.`,
		`udp  127.0.0.1  5060  NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.example.test. -> SRV _sip._udp.example.test. 0 5 box.example.test.`,
	}
	if got := strings.TrimSuffix(out.String(), "\n"); got != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestLocateCLIJSON(t *testing.T) {
	srv := locateDNS(t, locateZone...)
	var out, errb bytes.Buffer
	if code := dispatch([]string{"locate", "--json", "--dns", srv, "sips:example.test"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got []locateTarget
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if len(got) != 2 || got[0].Transport != "tls" || got[0].Address != "::1" || got[0].Port != 5061 ||
		got[0].SRV != "_sips._tcp.example.test." || got[0].Host != "box.example.test." || got[1].Address != "127.0.0.1" {
		t.Errorf("got %+v", got)
	}
}

func TestLocateCLIErrors(t *testing.T) {
	srv := locateDNS(t, locateZone...)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"locate"}, 2, "want exactly one URI"},
		{[]string{"locate", "a", "b"}, 2, "want exactly one URI"},
		{[]string{"locate", "http://example.test"}, 2, "unknown scheme"},
		{[]string{"locate", "--dns", srv, "sip:nowhere.example.test"}, 1, "no such domain"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := dispatch(tt.args, &out, &errb); code != tt.code || !strings.Contains(errb.String(), tt.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.msg)
		}
	}
}
