package main

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeUDPPort picks a loopback UDP port for the answering phone.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestPhoneCallAnswerLoopback: "phone answer" waits, "phone call" calls
// it directly (no proxy) on loopback, sends 1 s of RTP that the answerer
// echoes, and hangs up; both report their counts.
func TestPhoneCallAnswerLoopback(t *testing.T) {
	port := strconv.Itoa(freeUDPPort(t))
	var aout, aerr lockedBuffer
	acode := make(chan int, 1)
	go func() {
		acode <- dispatch([]string{"phone", "answer", "--aor", "sip:bob@127.0.0.1", "--listen", "127.0.0.1:" + port,
			"--host", "127.0.0.1", "--wait", "15s", "--duration", "15s"}, &aout, &aerr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !portBusy(port) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	var cout, cerr bytes.Buffer
	code := dispatch([]string{"phone", "call", "sip:bob@127.0.0.1:" + port, "--aor", "sip:alice@127.0.0.1", "--listen", "127.0.0.1:0",
		"--host", "127.0.0.1", "--duration", "1s", "--sip-timeout", "10s"}, &cout, &cerr)
	if code != 0 {
		t.Fatalf("phone call: exit %d\n%s\nanswer side:\n%s", code, cerr.String(), aerr.String())
	}
	select {
	case c := <-acode:
		if c != 0 {
			t.Fatalf("phone answer: exit %d\n%s", c, aerr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("phone answer did not end after the BYE\n%s", aerr.String())
	}
	t.Logf("call: %s", strings.TrimSpace(cerr.String()))
	t.Logf("answer: %s", strings.TrimSpace(aerr.String()))
	m := regexp.MustCompile(`rtp: sent (\d+) received (\d+) loss`).FindStringSubmatch(cerr.String())
	if m == nil {
		t.Fatalf("no rtp line from phone call:\n%s", cerr.String())
	}
	sent, _ := strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	if sent < 40 || recv < sent-1 {
		t.Errorf("sent %d received %d: want ~50 sent, all but one echoed", sent, recv)
	}
	if !strings.Contains(cerr.String(), "path: ice ") {
		t.Errorf("call path is not ICE:\n%s", cerr.String())
	}
	if !regexp.MustCompile(`rtp: received \d+ echoed \d+`).MatchString(aerr.String()) {
		t.Errorf("no rtp line from phone answer:\n%s", aerr.String())
	}
}

// portBusy reports whether the answering phone has bound the port.
func portBusy(port string) bool {
	p, _ := strconv.Atoi(port)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestPhoneUsage: bad invocations exit 2 with a reason.
func TestPhoneUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"phone"}, "usage: isthmus phone"},
		{[]string{"phone", "dial"}, `unknown mode "dial"`},
		{[]string{"phone", "call", "--aor", "sip:a@b"}, "the URI to call is required"},
		{[]string{"phone", "register", "--listen", "127.0.0.1:0"}, "--aor and --listen are required"},
		{[]string{"phone", "register", "--aor", "sip:a@2001:db8::1", "--listen", "127.0.0.1:0"}, "IPv6 reference without brackets"},
		{[]string{"phone", "register", "--aor", "sip:a@b", "--listen", "0.0.0.0:5060"}, "need a specific address"},
	} {
		var out, errb bytes.Buffer
		if code := dispatch(tc.args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", tc.args, code, errb.String())
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errb.String(), tc.want)
		}
	}
}
