package sdpcand

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/ice/v4"
)

// tortureDir holds the RFC 5118 torture messages with SDP bodies, copied
// byte-exact (LF line ends) from the project seeds.
const tortureDir = "testdata/torture"

// tortureBody returns the SDP body of a torture message: the bytes after
// the first blank line.
func tortureBody(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(tortureDir, name))
	if err != nil {
		tb.Fatalf("torture message %s: %v", name, err)
	}
	_, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		tb.Fatalf("%s: no blank line between headers and body", name)
	}
	return body
}

// sdpLines joins lines with CRLF and ends with CRLF, as on the wire.
func sdpLines(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func mustHost(tb testing.TB, addr string, port int, prio uint32) ice.Candidate {
	tb.Helper()
	c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network: "udp", Address: addr, Port: port, Component: 1, Priority: prio, Foundation: "h" + foundationOf(addr),
	})
	if err != nil {
		tb.Fatalf("host candidate %s:%d: %v", addr, port, err)
	}
	return c
}

func mustSrflx(tb testing.TB, addr string, port int, raddr string, rport int, prio uint32) ice.Candidate {
	tb.Helper()
	c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
		Network: "udp", Address: addr, Port: port, Component: 1, Priority: prio, Foundation: "s" + foundationOf(addr),
		RelAddr: raddr, RelPort: rport,
	})
	if err != nil {
		tb.Fatalf("srflx candidate %s:%d: %v", addr, port, err)
	}
	return c
}

func mustRelay(tb testing.TB, addr string, port int, raddr string, rport int, prio uint32) ice.Candidate {
	tb.Helper()
	c, err := ice.NewCandidateRelay(&ice.CandidateRelayConfig{
		Network: "udp", Address: addr, Port: port, Component: 1, Priority: prio, Foundation: "r" + foundationOf(addr),
		RelAddr: raddr, RelPort: rport,
	})
	if err != nil {
		tb.Fatalf("relay candidate %s:%d: %v", addr, port, err)
	}
	return c
}

// foundationOf turns an address into ice-chars for a readable foundation.
func foundationOf(addr string) string {
	r := strings.NewReplacer(".", "", ":", "")
	return r.Replace(addr)
}

const (
	testUfrag = "Ab3d"
	testPwd   = "0123456789abcdefghijkl"
)
