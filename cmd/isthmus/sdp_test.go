package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sdpTortureDir holds RFC 5118 torture messages, byte-exact (see its README).
const sdpTortureDir = "../../sdpcand/testdata/torture"

func runSDPCapture(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := sdpStdin
	sdpStdin = strings.NewReader(stdin)
	t.Cleanup(func() { sdpStdin = old })
	var out, errb bytes.Buffer
	code = runSDP(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestSDPCheckTortureMessages(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"inv-good", []string{
			"0 audio family=IPv6 address=2001:db8::1 port=6000 candidates=0 inherited",
			"1 video family=IPv6 address=2001:db8::1 port=6024 candidates=0 inherited",
		}},
		{"inv-mult-sdp", []string{
			"0 audio family=IPv4 address=192.0.2.1 port=22334 candidates=0",
			"1 video family=IPv6 address=2001:db8::1 port=6024 candidates=0",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(sdpTortureDir, tc.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("torture message: %v", err)
			}
			code, out, errOut := runSDPCapture(t, "", "check", path)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut)
			}
			if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(tc.want, "\n"))
			}
			if !strings.Contains(errOut, "SIP message") || !strings.Contains(errOut, "instead of CRLF") {
				t.Errorf("stderr does not report the SIP body and the LF line ends:\n%s", errOut)
			}
		})
	}
}

func TestSDPCheckStdin(t *testing.T) {
	valid := "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 224.2.1.1/127/3\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0\r\n" +
		"a=candidate:1 1 UDP 2130706431 2001:db8::1 4000 typ host\r\n" +
		"a=candidate:2 1 UDP 1694498815 peer.invalid 4002 typ srflx raddr 0.0.0.0 rport 9\r\n" +
		"m=audio 4002 RTP/AVP 0\r\nc=IN IP6 hold.invalid\r\n"
	code, out, errOut := runSDPCapture(t, valid, "check", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := "0 audio family=IPv4 address=224.2.1.1 port=4000 candidates=1 inherited ttl=127 count=3 bad-candidates=1\n" +
		"1 audio family=IPv6 address=hold.invalid port=4002 candidates=0 unspecified\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "peer.invalid") {
		t.Errorf("the unparsable candidate is not reported on stderr:\n%s", errOut)
	}
}

func TestSDPCheckInvalid(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\n"
	cases := []struct {
		name, in, reason string
	}{
		{"address does not match IP4", head + "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 2001:db8::1\r\n", "does not match its network type"},
		{"two c= lines in one media", head + "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\nc=IN IP6 2001:db8::1\r\n", "more than one c= line"},
		{"no c= line", head + "m=audio 4000 RTP/AVP 0\r\n", "without a c= line"},
		{"no m= line", head, "no media description"},
		{"not SDP", "hello\r\n", "first line must be v=0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runSDPCapture(t, tc.in, "check", "-")
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q stderr %q", code, out, errOut)
			}
			if !strings.Contains(errOut, "sdp check: invalid: ") || !strings.Contains(errOut, tc.reason) {
				t.Errorf("stderr %q, want the reason %q", errOut, tc.reason)
			}
			if out != "" {
				t.Errorf("stdout %q for an invalid description, want nothing", out)
			}
		})
	}

	code, _, errOut := runSDPCapture(t, "", "check", filepath.Join(t.TempDir(), "missing.sdp"))
	if code != 1 || !strings.Contains(errOut, "missing.sdp") {
		t.Errorf("missing file: exit %d, stderr %q; want 1 naming the file", code, errOut)
	}
}

func TestSDPUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"lint"}, 2},
		{[]string{"check"}, 2},
		{[]string{"check", "a", "b"}, 2},
		{[]string{"check", "--bogus", "-"}, 2},
		{[]string{"--help"}, 0},
		{[]string{"check", "--help"}, 0},
	}
	for _, tc := range cases {
		code, out, errOut := runSDPCapture(t, "", tc.args...)
		if code != tc.code {
			t.Errorf("sdp %q: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut)
		}
		if out != "" || !strings.Contains(errOut, "usage: isthmus sdp check") {
			t.Errorf("sdp %q: stdout %q, stderr %q; want usage on stderr only", tc.args, out, errOut)
		}
	}
	// Reached through the dispatcher, too.
	var out, errb bytes.Buffer
	if code := dispatch([]string{"sdp"}, &out, &errb); code != 2 {
		t.Errorf("dispatch sdp: exit %d, want 2", code)
	}
}
