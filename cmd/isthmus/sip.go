package main

import (
	"fmt"
	"io"
	"os"

	"github.com/isthmusrelay/isthmus/internal/sipcheck"
	"github.com/isthmusrelay/isthmus/sipaddr"
)

// sipStdin is where "isthmus sip check -" reads; tests replace it.
var sipStdin io.Reader = os.Stdin

func init() {
	register("sip", "give a SIP message its RFC 5118 verdict: sip check FILE|-", runSIP)
}

const sipUsage = `usage: isthmus sip check FILE|-

Reads one SIP request or response from FILE, or from standard input for
"-", and prints the verdict a conforming parser must reach (RFC 3261, with
the IPv6 rules of RFC 5118), then what it read:

  verdict: accept[, tolerating <forms RFC 5118 asks receivers to accept>]
  request: <request line>            or  status: <status line>
  request-uri: host=<host> family=<IPv4|IPv6|name> port=<port|->
  via: <protocol/transport> sent-by=<host> family=... port=... received=<ip|-> rport=<port|yes|-> (top of <n>)
  contact: <uri> host=<host> family=... port=...   (one per Contact; "contact: -" when none)
  sdp: <index> <media> family=... address=... port=... candidates=<n>   (one per m-line)
  tolerated: <where, and what RFC 5118 form was accepted>
  note: <remark that does not change the verdict>

or, for a message a conforming parser must refuse (answer 400):

  verdict: reject: <reason>

LF or CRLF line ends, folded header lines, compact header names and an off
Content-Length are accepted (and noted).

Exit status: 0 accept, 1 reject, 2 unreadable input or usage error.
`

// runSIP implements "isthmus sip check FILE|-".
func runSIP(args []string, stdout, stderr io.Writer) int {
	data, code, ok := checkInput("sip", sipUsage, args, sipStdin, sipcheck.MaxSize, 2, stderr)
	if !ok {
		return code
	}
	res := sipcheck.Check(data)
	writeVerdict(stdout, res)
	if !res.Accept {
		return 1
	}
	return 0
}

// readSIPInput reads name ("-" = standard input), at most one byte more
// writeVerdict prints the verdict and what was read (see sipUsage).
func writeVerdict(w io.Writer, res *sipcheck.Result) {
	if !res.Accept {
		fmt.Fprintf(w, "verdict: reject: %s\n", res.Reason)
		if res.StartLine != "" {
			fmt.Fprintf(w, "%s: %s\n", startLabel(res), res.StartLine)
		}
		writeNotes(w, res)
		return
	}
	if len(res.Tolerated) == 0 {
		fmt.Fprintln(w, "verdict: accept")
	} else {
		fmt.Fprintf(w, "verdict: accept, tolerating %s\n", res.Quirks)
	}
	fmt.Fprintf(w, "%s: %s\n", startLabel(res), res.StartLine)
	if res.Request {
		if res.URI.Scheme != "" {
			fmt.Fprintf(w, "request-uri: %s\n", hostFields(res.URI.HostPort))
		} else {
			fmt.Fprintf(w, "request-uri: %s (not a SIP URI)\n", res.RequestURI)
		}
	}
	if len(res.Vias) > 0 {
		v := res.Vias[0]
		received, rport := "-", "-"
		if v.Received.IsValid() {
			received = v.Received.Addr().String()
		}
		if v.HasRPort {
			rport = "yes"
			if v.RPort != 0 {
				rport = fmt.Sprint(v.RPort)
			}
		}
		fmt.Fprintf(w, "via: %s/%s sent-by=%s received=%s rport=%s (top of %d)\n",
			v.Protocol, v.Transport, hostFields(v.SentBy)[len("host="):], received, rport, len(res.Vias))
	}
	if len(res.Contacts) == 0 {
		fmt.Fprintln(w, "contact: -")
	}
	for _, c := range res.Contacts {
		switch {
		case c.Wildcard:
			fmt.Fprintln(w, "contact: *")
		case c.IsSIP():
			fmt.Fprintf(w, "contact: %s %s\n", c.URI, hostFields(c.URI.HostPort))
		default:
			fmt.Fprintf(w, "contact: %s (not a SIP URI)\n", c.RawURI)
		}
	}
	for _, t := range res.Tolerated {
		fmt.Fprintf(w, "tolerated: %s\n", t)
	}
	if res.SDP != nil {
		for _, m := range res.SDP.Media {
			fmt.Fprintf(w, "sdp: %s\n", mediaLine(m))
		}
	}
	writeNotes(w, res)
}

func writeNotes(w io.Writer, res *sipcheck.Result) {
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func startLabel(res *sipcheck.Result) string {
	if res.Request {
		return "request"
	}
	if res.Status != 0 {
		return "status"
	}
	return "start"
}

// hostFields formats "host=<host> family=<family> port=<port>" and, for an
// IPv4-mapped address, the IPv4 address it reaches.
func hostFields(hp sipaddr.HostPort) string {
	fam := "name"
	if hp.Host.IsIP() {
		fam = hp.Host.Family().String()
	}
	port := "-"
	if hp.Port != 0 {
		port = fmt.Sprint(hp.Port)
	}
	s := fmt.Sprintf("host=%s family=%s port=%s", hp.Host, fam, port)
	if a := hp.Host.Addr(); a.Is4In6() {
		s += " mapped=" + a.Unmap().String()
	}
	return s
}
