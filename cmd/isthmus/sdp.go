package main

import (
	"bytes"
	"errors"
	"flag"
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
	if len(args) == 0 {
		fmt.Fprint(stderr, sdpUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, sdpUsage)
		return 0
	case "check":
	default:
		fmt.Fprintf(stderr, "sdp: unknown action %q\n\n%s", args[0], sdpUsage)
		return 2
	}

	fs := flag.NewFlagSet("sdp check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sdpUsage) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "sdp check: want exactly one FILE or -, got %d arguments\n\n%s", fs.NArg(), sdpUsage)
		return 2
	}

	data, err := readSDPInput(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "sdp check: %v\n", err)
		return 1
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
// than sdpcand.MaxSize so Parse can say the input is too large.
func readSDPInput(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = sdpStdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, sdpcand.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

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
