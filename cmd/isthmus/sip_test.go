package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sipTestdata holds the draft's torture messages (torture/, byte-exact) and
// RFC 5118's twelve written from its descriptions (rfc5118/).
const sipTestdata = "../../sipaddr/testdata"

func runSIPCapture(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := sipStdin
	sipStdin = strings.NewReader(stdin)
	t.Cleanup(func() { sipStdin = old })
	var out, errb bytes.Buffer
	code = runSIP(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestSIPCheckTortureVerdicts(t *testing.T) {
	cases := []struct {
		file  string
		code  int
		lines []string // lines that must appear in stdout, in this order
	}{
		{"torture/reg-good", 0, []string{
			"verdict: accept",
			"request: REGISTER sip:[2001:db8::10] SIP/2.0",
			"request-uri: host=[2001:db8::10] family=IPv6 port=-",
			"via: SIP/2.0/UDP sent-by=[2001:db8::9:1] family=IPv6 port=- received=- rport=- (top of 1)",
			"contact: sip:caller@[2001:db8::1] host=[2001:db8::1] family=IPv6 port=-",
		}},
		{"torture/reg-good-port", 0, []string{"verdict: accept", "request-uri: host=[2001:db8::10] family=IPv6 port=5070"}},
		{"torture/reg-ambiguous", 0, []string{"verdict: accept", "request-uri: host=[2001:db8::10:5070] family=IPv6 port=-"}},
		{"torture/reg-param", 1, []string{
			`verdict: reject: no Via header (RFC 3261 §8.1.1): line 4 " Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:2..." starts with white space, so RFC 3261 §7.3.1 makes it part of the From header`,
			"request: REGISTER sip:[2001:db8::10] SIP/2.0",
		}},
		{"torture/inv-good", 0, []string{
			"verdict: accept",
			"sdp: 0 audio family=IPv6 address=2001:db8::1 port=6000 candidates=0 inherited",
			"sdp: 1 video family=IPv6 address=2001:db8::1 port=6024 candidates=0 inherited",
			"note: Content-Length says 268 but the body has 241 bytes; the body is read to the end of the input",
		}},
		{"torture/inv-mult-sdp", 0, []string{
			"verdict: accept",
			"sdp: 0 audio family=IPv4 address=192.0.2.1 port=22334 candidates=0",
			"sdp: 1 video family=IPv6 address=2001:db8::1 port=6024 candidates=0",
		}},
		{"torture/bye-good", 0, []string{
			"verdict: accept",
			"via: SIP/2.0/UDP sent-by=[2001:db8::9:1] family=IPv6 port=6050 received=- rport=- (top of 3)",
			"contact: -",
		}},
		{"rfc5118/ipv6-bad", 1, []string{
			`verdict: reject: Request-URI host: IPv6 reference without brackets ("2001:db8::10"); RFC 3261 §25.1 writes IPv6 as [address], RFC 5118 §4.2: answer 400 Bad Request`,
		}},
		{"rfc5118/via-received-param-with-delim", 0, []string{
			"verdict: accept, tolerating brackets around received (RFC 5118 §4.5)",
			"via: SIP/2.0/UDP sent-by=[2001:db8::9:1] family=IPv6 port=- received=2001:db8::9:255 rport=- (top of 1)",
		}},
		{"rfc5118/ipv6-bug-abnf-3-colons", 0, []string{
			"verdict: accept, tolerating three colons before the embedded IPv4 address (RFC 5118 §4.10)",
			"request-uri: host=[2001:db8::c000:201] family=IPv6 port=-",
		}},
		{"rfc5118/ipv4-mapped-ipv6", 0, []string{
			"via: SIP/2.0/UDP sent-by=[::ffff:192.0.2.10] family=IPv6 port=19823 mapped=192.0.2.10 received=- rport=- (top of 2)",
			"contact: sip:ted@[::ffff:192.0.2.2] host=[::ffff:192.0.2.2] family=IPv6 port=- mapped=192.0.2.2",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(sipTestdata, tc.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runSIPCapture(t, "", "check", path)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			rest := out
			for _, want := range tc.lines {
				i := strings.Index(rest, want+"\n")
				if i < 0 {
					t.Fatalf("stdout lacks (in order) %q:\n%s", want, out)
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

func TestSIPCheckStdinCRLFAndExitCodes(t *testing.T) {
	msg := "OPTIONS sip:[2001:db8::10]:5070 SIP/2.0\r\nv: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1;rport\r\n" +
		"t: sip:u@example.com\r\nf: sip:u@example.com;tag=1\r\ni: x@y\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n"
	code, out, _ := runSIPCapture(t, msg, "check", "-")
	if code != 0 || !strings.HasPrefix(out, "verdict: accept\n") || !strings.Contains(out, "rport=yes") || strings.Contains(out, "note:") {
		t.Errorf("CRLF message on stdin: exit %d\n%s", code, out)
	}
	code, out, _ = runSIPCapture(t, "", "check", "-")
	if code != 1 || out != "verdict: reject: empty input: no start line\n" {
		t.Errorf("empty stdin: exit %d\n%s", code, out)
	}
	code, _, errOut := runSIPCapture(t, "", "check", filepath.Join(t.TempDir(), "missing"))
	if code != 2 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{nil, {"verify", "x"}, {"check"}, {"check", "a", "b"}} {
		if code, _, _ := runSIPCapture(t, "", args...); code != 2 {
			t.Errorf("args %q: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runSIPCapture(t, "", "--help"); code != 0 || !strings.Contains(errOut, "usage: isthmus sip check") {
		t.Errorf("--help: exit %d", code)
	}
}

func TestSIPRegistered(t *testing.T) {
	if _, ok := commands["sip"]; !ok {
		t.Fatal(`"sip" is not registered`)
	}
}
