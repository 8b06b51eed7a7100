package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/isthmusrelay/isthmus/sdpcand"
)

// sdpStdin is where "isthmus sdp check -" reads; tests replace it.
var sdpStdin io.Reader = os.Stdin

func init() {
	register("sdp", "check an SDP body (or a SIP message carrying one): sdp check FILE|-", runSDP)
}

const sdpUsage = `usage: isthmus sdp check FILE|-

Reads an SDP description from FILE, or from standard input for "-". A whole
SIP request or response is accepted too: its body (after the first blank
line) is checked. Prints one line per media description:

  <index> <media> family=<IPv4|IPv6> address=<c= address> port=<port> candidates=<n> [flags]

flags: inherited (c= from session level), unspecified (0.0.0.0, :: or a
.invalid name), ttl=/count= (multicast), bad-candidates=<n> (a=candidate lines
pion/ice could not parse; each is reported on stderr). Tolerated quirks
(LF line ends, trailing white space) are reported on stderr as warnings.

Exit status: 0 valid, 1 invalid (reason on stderr), 2 usage error.
`

// runSDP implements "isthmus sdp check FILE|-".
func runSDP(args []string, stdout, stderr io.Writer) int {
	data, code, ok := checkInput("sdp", sdpUsage, args, sdpStdin, sdpcand.MaxSize, 1, stderr)
	if !ok {
		return code
	}
	body, fromSIP := sdpBody(data)
	if fromSIP {
		fmt.Fprintf(stderr, "sdp check: note: input is a SIP message; checking its %d-byte body\n", len(body))
	}
	sess, err := sdpcand.Parse(body)
	if err != nil {
		fmt.Fprintf(stderr, "sdp check: invalid: %v\n", err)
		return 1
	}
	if len(sess.Media) == 0 {
		fmt.Fprintln(stderr, "sdp check: invalid: no media description (m= line)")
		return 1
	}
	for _, w := range sess.Warnings {
		fmt.Fprintf(stderr, "sdp check: warning: %s\n", w)
	}
	for _, m := range sess.Media {
		fmt.Fprintln(stdout, mediaLine(m))
	}
	return 0
}

// mediaLine formats one media description for "sdp check".
func mediaLine(m sdpcand.Media) string {
	var b strings.Builder
	fam := m.Family.String()
	addr := m.Address
	if addr == "" {
		addr = "-"
	}
	fmt.Fprintf(&b, "%d %s family=%s address=%s port=%d candidates=%d", m.Index, m.Kind, fam, addr, m.Port, len(m.Candidates))
	if m.Inherited {
		b.WriteString(" inherited")
	}
	if m.Unspecified {
		b.WriteString(" unspecified")
	}
	if m.TTL > 0 {
		fmt.Fprintf(&b, " ttl=%d", m.TTL)
	}
	if m.AddrCount > 0 {
		fmt.Fprintf(&b, " count=%d", m.AddrCount)
	}
	if n := len(m.CandidateErrors); n > 0 {
		fmt.Fprintf(&b, " bad-candidates=%d", n)
	}
	return b.String()
}

// readSDPInput reads name ("-" = standard input), at most one byte more
// sdpBody returns the SDP part of data: data itself, or the body of a SIP
// message (the bytes after the first empty line) when data starts with a
// SIP request or status line. Content-Length is not trusted: archived
// torture messages changed line ends without updating it.
func sdpBody(data []byte) ([]byte, bool) {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	first = bytes.TrimRight(first, "\r")
	isSIP := bytes.HasPrefix(first, []byte("SIP/2.0 ")) || bytes.HasSuffix(first, []byte(" SIP/2.0"))
	if !isSIP {
		return data, false
	}
	for _, sep := range []string{"\r\n\r\n", "\n\n", "\n\r\n"} {
		if i := bytes.Index(data, []byte(sep)); i >= 0 {
			return data[i+len(sep):], true
		}
	}
	return nil, true
}
