package demo

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints one line per scenario: path, packets sent and
// received (both ways together), loss and the offerer's RTT percentiles.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRELAY\tPATH\tPAIR\tSENT\tRECV\tLOSS\tRTT p50\tRTT p99\tRESULT")
	for _, r := range results {
		sc := r.Scenario
		relay := string(sc.Relay)
		if relay == "" {
			relay = "-"
		}
		if r.Err != nil && !errors.Is(r.Err, ErrSkipped) && r.Offerer.Stats.ProbesSent == 0 {
			fmt.Fprintf(tw, "%s %s\t%s\t-\t-\t-\t-\t-\t-\t-\tFAIL\n", sc.ID, sc.Title, relay)
			continue
		}
		if errors.Is(r.Err, ErrSkipped) {
			fmt.Fprintf(tw, "%s %s\t%s\t-\t-\t-\t-\t-\t-\t-\tSKIP\n", sc.ID, sc.Title, relay)
			continue
		}
		sent := r.Offerer.Stats.Sent() + r.Answerer.Stats.Sent()
		recv := r.Offerer.Stats.Received() + r.Answerer.Stats.Received()
		loss := 0.0
		if sent > 0 {
			loss = 100 * float64(sent-recv) / float64(sent)
		}
		verdict := "PASS"
		if !r.Passed() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%d\t%d\t%.1f%%\t%s\t%s\t%s\n", sc.ID, sc.Title, relay,
			pathSummary(r), pairSummary(r), sent, recv, loss,
			roundDuration(r.Offerer.Stats.RTTp50), roundDuration(r.Offerer.Stats.RTTp99), verdict)
	}
	return tw.Flush()
}

// WriteFailures prints, for every scenario that did not pass, its error or
// the checks that failed.
func WriteFailures(w io.Writer, results []*Result) {
	for _, r := range results {
		if r.Passed() || errors.Is(r.Err, ErrSkipped) {
			continue
		}
		fmt.Fprintf(w, "scenario %s (%s) failed:\n", r.Scenario.ID, r.Scenario.Title)
		if r.Err != nil {
			fmt.Fprintf(w, "  %v\n", r.Err)
		}
		for _, c := range r.Checks {
			if !c.OK {
				fmt.Fprintf(w, "  check %q: %s\n", c.Name, c.Detail)
			}
		}
	}
}

func roundDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

// hop is one leg of the media path between two of the picture's columns.
type hop struct {
	from, to   int // column: 0 offerer, 1 relay, 2 answerer
	src, dst   string
	family     string
	annotation string
}

// mediaHops returns the legs that offerer -> answerer media takes.
func mediaHops(r *Result) []hop {
	o, a := r.Offerer.Path, r.Answerer.Path
	oHost, aHost := r.Offerer.Host, r.Answerer.Host
	switch {
	case o.Local.Type == "relay" && a.Local.Type == "relay":
		return []hop{
			{0, 1, hostAddr(oHost, familyOfServer(o.Server)), o.Server, familyOfServer(o.Server), "TURN"},
			{1, 2, a.Server, hostAddr(aHost, familyOfServer(a.Server)), familyOfServer(a.Server), "TURN (relay to relay)"},
		}
	case o.Local.Type == "relay":
		return []hop{
			{0, 1, hostAddr(oHost, familyOfServer(o.Server)), o.Server, familyOfServer(o.Server), "TURN"},
			{1, 2, o.Local.Addr, o.Remote.Addr, o.Local.Family, "relayed"},
		}
	case a.Local.Type == "relay":
		return []hop{
			{0, 1, o.Local.Addr, a.Local.Addr, a.Local.Family, "to relayed addr"},
			{1, 2, a.Server, hostAddr(aHost, familyOfServer(a.Server)), familyOfServer(a.Server), "TURN"},
		}
	}
	return []hop{{0, 2, o.Local.Addr, o.Remote.Addr, o.Local.Family, "direct"}}
}

// pathSummary renders the families hop by hop: "ua6 -IPv6-> relay -IPv4-> ua4".
func pathSummary(r *Result) string {
	names := []string{r.Offerer.Host, "relay", r.Answerer.Host}
	hops := mediaHops(r)
	var b strings.Builder
	b.WriteString(names[hops[0].from])
	for _, h := range hops {
		fmt.Fprintf(&b, " -%s-> %s", h.family, names[h.to])
	}
	return b.String()
}

func pairSummary(r *Result) string {
	o, a := r.Offerer.Path, r.Answerer.Path
	mode := "ICE"
	if !o.ICE || !a.ICE {
		mode = "no ICE"
	}
	return fmt.Sprintf("%s/%s (%s)", o.Local.Type, a.Local.Type, mode)
}

func familyOfServer(hostPort string) string {
	ap, err := netip.ParseAddrPort(hostPort)
	if err == nil && ap.Addr().Is4() {
		return "IPv4"
	}
	if err == nil {
		return "IPv6"
	}
	return "?"
}

// hostAddr is the host's address of the family, from the topology.
func hostAddr(host, family string) string {
	v6 := family == "IPv6"
	switch host {
	case HostUA6:
		return UA6Addr.String()
	case HostUA4:
		return UA4Addr.String()
	case HostLegacy4:
		return Legacy4Addr.String()
	case HostDS1:
		if v6 {
			return DS1Addrs[1].String()
		}
		return DS1Addrs[0].String()
	case HostDS2:
		if v6 {
			return DS2Addrs[1].String()
		}
		return DS2Addrs[0].String()
	}
	return host
}

// Picture layout: three lifelines (offerer, relay, answerer).
const (
	colGap   = 50
	picWidth = 2*colGap + 1
)

// canvas draws a sequence diagram line by line.
type canvas struct {
	w    io.Writer
	cols [3]int
}

func newCanvas(w io.Writer) *canvas { return &canvas{w: w, cols: [3]int{0, colGap, 2 * colGap}} }

func (c *canvas) blank() []byte {
	line := []byte(strings.Repeat(" ", picWidth))
	for _, x := range c.cols {
		line[x] = '|'
	}
	return line
}

func (c *canvas) text(line []byte, note string) {
	fmt.Fprintln(c.w, strings.TrimRight(string(line)+"  "+note, " "))
}

// lifelines prints an empty row.
func (c *canvas) lifelines() { c.text(c.blank(), "") }

// arrow prints "|--- label --->|" between two columns (either direction),
// with an optional note right of the picture.
func (c *canvas) arrow(from, to int, label, note string) {
	line := c.blank()
	x1, x2 := c.cols[min(from, to)], c.cols[max(from, to)]
	for x := x1 + 1; x < x2; x++ {
		line[x] = '-'
	}
	if to > from {
		line[x2-1] = '>'
	} else {
		line[x1+1] = '<'
	}
	span := x2 - x1 - 5
	if len(label) > span {
		label = label[:span-1] + "~"
	}
	label = " " + label + " "
	start := x1 + (x2-x1-len(label))/2 + 1
	copy(line[start:], label)
	c.text(line, note)
}

// header prints a label centred on each column.
func (c *canvas) header(labels [3]string) {
	line := []byte(strings.Repeat(" ", picWidth+colGap))
	for i, l := range labels {
		start := c.cols[i] - len(l)/2
		if i == 0 {
			start = 0
		}
		if i == 2 {
			start = min(start, len(line)-len(l))
		}
		copy(line[max(0, start):], l)
	}
	fmt.Fprintln(c.w, strings.TrimRight(string(line), " "))
}

// WritePicture draws who talked to whom through which address: the TURN
// allocations, the offer and the answer, and the media legs each way with
// the packet counts.
func WritePicture(w io.Writer, r *Result) {
	sc := r.Scenario
	fmt.Fprintf(w, "scenario %s: %s (relay: %s)\n\n", sc.ID, sc.Title, orDash(string(sc.Relay)))
	if errors.Is(r.Err, ErrSkipped) || r.Offerer.Path.Local.Addr == "" {
		fmt.Fprintf(w, "  (no picture: %v)\n\n", r.Err)
		return
	}
	c := newCanvas(w)
	c.header([3]string{
		r.Offerer.Host + " " + hostAddr(r.Offerer.Host, r.Offerer.Path.Local.Family),
		"relay " + RelayIPv4.String() + " | " + RelayIPv6.String(),
		r.Answerer.Host + " " + hostAddr(r.Answerer.Host, r.Answerer.Path.Local.Family),
	})
	c.lifelines()
	for i, e := range []*EndpointResult{&r.Offerer, &r.Answerer} {
		if e.Path.Local.Type != "relay" {
			continue
		}
		col := 2 * i
		fam := familyOfServer(e.Path.Server)
		c.arrow(col, 1, "Allocate over "+fam+" to "+e.Path.Server, "")
		c.arrow(1, col, "relayed "+e.Path.Local.Family+" "+e.Path.Local.Addr, "")
	}
	c.arrow(0, 2, "offer  "+sdpSummary(r.Offer), "SDP via signalling")
	c.arrow(2, 0, "answer "+sdpSummary(r.Answer), "SDP via signalling")
	if r.Offerer.Path.ICE && r.Answerer.Path.ICE {
		c.arrow(0, 2, "ICE checks -> pair "+r.Offerer.Path.Local.Type+"/"+r.Offerer.Path.Remote.Type, "")
	}
	fwd := mediaHops(r)
	forward := fmt.Sprintf("%d RTP -> %d", r.Offerer.Stats.Sent(), r.Answerer.Stats.Received())
	backward := fmt.Sprintf("%d RTP <- %d", r.Offerer.Stats.Received(), r.Answerer.Stats.Sent())
	for i, h := range fwd {
		note := ""
		if i == len(fwd)-1 {
			note = forward
		}
		c.arrow(h.from, h.to, h.src+" -> "+h.dst, note)
	}
	for i := len(fwd) - 1; i >= 0; i-- {
		h := fwd[i]
		note := ""
		if i == 0 {
			note = backward
		}
		c.arrow(h.to, h.from, h.dst+" -> "+h.src, note)
	}
	c.lifelines()
	fmt.Fprintln(w)
}

// sdpSummary is "c=IN IP4 192.0.2.1 m=49152, 3 candidates".
func sdpSummary(body string) string {
	ms, err := readSDP(body)
	if err != nil || len(ms) == 0 {
		return "(unreadable SDP)"
	}
	m := ms[0]
	s := fmt.Sprintf("c=IN %s %s m=%d", m.NetType, m.Addr, m.Port)
	if n := len(m.Candidates); n > 0 {
		s += fmt.Sprintf(", %d cand", n)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
