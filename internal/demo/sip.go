package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/isthmusrelay/isthmus/deploy/kamailio"
	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/internal/netns"
)

// The SIP call of RFC 6157 §3.1.1 and §4 in the demo network: the
// IPv6-only phone (`isthmus phone call`) registers at Kamailio on the
// dual-stack host and calls an IPv4-only sipp UAS through it; the media
// goes through our relay's IPv4 allocation and sipp echoes it.

const (
	sipPort      = 5060
	sippMedia    = 6000
	sipDemoPass  = "isthmus-demo"
	sipReadyWait = 15 * time.Second
)

// SIPResult is the outcome of RunSIP: the checks, the phone's report lines
// and the Record-Route headers each side saw.
type SIPResult struct {
	Checks []Check
	// Phone is what `isthmus phone call` printed (registration, path, rtp).
	Phone []string
	// RecordRoute is the INVITE's Record-Route as the IPv4-only UAS got it.
	RecordRoute []string
	Elapsed     time.Duration
	Err         error
}

// Passed reports whether the run completed and every check passed.
func (r *SIPResult) Passed() bool { return allPassed(r.Err, r.Checks) }

func (r *SIPResult) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, newCheck(name, ok, format, args...))
}

// RunSIP builds the namespaces, starts our relay and Kamailio on the
// dual-stack host and sipp on the IPv4-only one, places the call from the
// IPv6-only one with opt.Binary's `phone call`, and tears everything down.
// It needs kamailio and sipp in PATH (ErrSkipped otherwise).
func RunSIP(ctx context.Context, opt Options) (res *SIPResult) {
	opt.defaults()
	res = &SIPResult{}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	for _, tool := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(tool); err != nil {
			res.Err = fmt.Errorf("demo: sip: %w: %s is not installed", ErrSkipped, tool)
			return res
		}
	}
	media := time.Duration(opt.Packets) * opt.Interval
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second+media+opt.Drain)
	defer cancel()
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "sip: %s\n", fmt.Sprintf(format, args...))
		}
	}

	run, err := netns.NewRun()
	if err != nil {
		res.Err = err
		return res
	}
	defer func() {
		if err := run.Close(); err != nil && res.Err == nil {
			res.Err = fmt.Errorf("demo: sip: teardown: %w", err)
		}
	}()
	dir := opt.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "isthmus-demo-"); err != nil {
			res.Err = err
			return res
		}
		defer os.RemoveAll(dir)
	}
	dir = filepath.Join(dir, "sip")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		res.Err = err
		return res
	}
	cfg, uas := filepath.Join(dir, "kamailio.cfg"), filepath.Join(dir, "uas-rr.xml")
	for name, data := range map[string][]byte{cfg: kamailio.Config, uas: kamailio.SippUAS} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			res.Err = err
			return res
		}
	}

	progress("building namespaces (run %s)", run.ID)
	topo, err := BuildTopology(ctx, run, TopologyOptions{})
	if err != nil {
		res.Err = err
		return res
	}
	progress("starting the isthmus relay")
	relay, err := startRelay(ctx, RelayIsthmus, topo.Relay, opt.Binary, "", dir)
	defer relay.stop()
	if err != nil {
		res.Err = err
		return res
	}

	progress("starting kamailio (double Record-Route across families)")
	klog := &lockedbuf.Buffer{Max: 256 << 10}
	kam := topo.Relay.Command(ctx, "kamailio", "-f", cfg, "-DD", "-E", "-Y", dir, "-w", dir, "-A", `DEMO_PASS="`+sipDemoPass+`"`)
	kam.Stdout, kam.Stderr = klog, klog
	if err := kam.Start(); err != nil {
		res.Err = fmt.Errorf("demo: sip: kamailio: %w", err)
		return res
	}
	kdone := make(chan struct{})
	go func() { _ = kam.Wait(); close(kdone) }()
	defer func() { _ = kam.Cancel(); <-kdone }()
	for _, w := range []struct {
		ns       *netns.Namespace
		from, to netip.Addr
	}{{topo.UA4, UA4Addr, RelayIPv4}, {topo.UA6, UA6Addr, RelayIPv6}} {
		if err := waitSIPServer(ctx, w.ns, w.from, netip.AddrPortFrom(w.to, sipPort), kdone); err != nil {
			res.Err = fmt.Errorf("demo: sip: kamailio not ready: %w\n%s", err, klog.String())
			return res
		}
	}

	progress("starting sipp as the IPv4-only UAS, echoing RTP")
	trace := filepath.Join(dir, "sipp.msg")
	sippOut := &lockedbuf.Buffer{Max: 64 << 10}
	sipp := topo.UA4.Command(ctx, "sipp", "-sf", uas, "-i", UA4Addr.String(), "-p", strconv.Itoa(sipPort),
		"-mi", UA4Addr.String(), "-mp", strconv.Itoa(sippMedia), "-rtp_echo",
		"-m", "1", "-timeout", strconv.Itoa(int((60*time.Second+media)/time.Second))+"s", "-nostdin", "-trace_msg", "-message_file", trace)
	sipp.Stdout, sipp.Stderr = sippOut, sippOut
	if err := sipp.Start(); err != nil {
		res.Err = fmt.Errorf("demo: sip: sipp: %w", err)
		return res
	}
	sdone := make(chan error, 1)
	go func() { sdone <- sipp.Wait() }()
	defer func() {
		select {
		case <-sdone:
		default:
			_ = sipp.Cancel()
			<-sdone
		}
	}()
	time.Sleep(300 * time.Millisecond) // sipp binds its socket

	progress("isthmus phone call from the IPv6-only host")
	phone := topo.UA6.Command(ctx, opt.Binary, "phone", "call", "sip:service@"+netip.AddrPortFrom(UA4Addr, sipPort).String(),
		"--aor", "sip:alice@["+RelayIPv6.String()+"]",
		"--listen", netip.AddrPortFrom(UA6Addr, sipPort).String(),
		"--proxy", "sip:"+netip.AddrPortFrom(RelayIPv6, sipPort).String(),
		"--sip-pass", sipDemoPass,
		"--turn", turnURL(true), "--user", demoUser, "--pass", relay.pass,
		"--duration", media.String(), "--sip-timeout", "15s")
	out, perr := phone.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "registered:") || strings.HasPrefix(l, "path:") || strings.HasPrefix(l, "rtp:") || strings.HasPrefix(l, "phone ") {
			res.Phone = append(res.Phone, l)
		}
	}
	if perr != nil {
		res.Err = fmt.Errorf("demo: sip: isthmus phone call: %v\n%s", perr, out)
		return res
	}
	select {
	case err := <-sdone:
		sdone <- err
		res.check("sipp UAS", err == nil, "exit status: %v", errOrZero(err))
	case <-time.After(15 * time.Second):
		res.check("sipp UAS", false, "did not exit after the call")
	}

	text := string(out)
	res.check("registered over IPv6", strings.Contains(text, "registered: sip:alice@["+UA6Addr.String()+"]"), "%s", firstLine(res.Phone, "registered:"))
	res.check("media through the relay's IPv4 address", strings.Contains(text, "path: legacy-relay relay/IPv4 -> legacy/IPv4"), "%s", firstLine(res.Phone, "path:"))
	if m := regexp.MustCompile(`rtp: sent (\d+) received (\d+)`).FindStringSubmatch(text); m != nil {
		sent, _ := strconv.Atoi(m[1])
		recv, _ := strconv.Atoi(m[2])
		res.check("RTP echoed ≥ 99.9 %", sent > 0 && recv*1000 >= sent*999, "sent %d, received %d", sent, recv)
	} else {
		res.check("RTP echoed ≥ 99.9 %", false, "no rtp report from the phone")
	}
	tr, _ := os.ReadFile(trace)
	res.RecordRoute = sippRecordRoute(string(tr))
	rr := res.RecordRoute
	res.check("two Record-Route, IPv4 on top (RFC 6157 §3.1.1)",
		len(rr) == 2 && strings.Contains(rr[0], RelayIPv4.String()) && strings.Contains(rr[1], "["+RelayIPv6.String()+"]"),
		"%s", strings.Join(rr, " , "))
	kl := klog.String()
	want := "relay INVITE from " + UA6Addr.String() + " on " + RelayIPv6.String() + " to sip:service@" + UA4Addr.String()
	res.check("kamailio relayed the INVITE across families", strings.Contains(kl, want), "%s", want)
	res.check("kamailio routed the BYE by its Route entries", strings.Contains(kl, "relay BYE from "+UA6Addr.String()), "loose_route")
	return res
}

func errOrZero(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

func firstLine(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return "(none)"
}

// sippRecordRoute returns the Record-Route values of the first INVITE in
// sipp's -trace_msg file.
func sippRecordRoute(trace string) []string {
	i := strings.Index(trace, "\nINVITE ")
	if i < 0 {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(trace[i+1:]))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Record-Route") {
			for _, p := range strings.Split(v, ",") {
				out = append(out, strings.TrimSpace(p))
			}
		}
	}
	return out
}

// waitSIPServer sends OPTIONS from ns until server answers anything.
func waitSIPServer(ctx context.Context, ns *netns.Namespace, from netip.Addr, server netip.AddrPort, exited <-chan struct{}) error {
	c, err := ns.ListenUDP(netip.AddrPortFrom(from, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	host := from.String()
	if from.Is6() {
		host = "[" + host + "]"
	}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(sipReadyWait)
	for i := 0; time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKdemo%d\r\nMax-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=d%d\r\nTo: <sip:%s>\r\nCall-ID: demo-wait-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			server, c.LocalAddr(), i, host, i, server, i)
		if _, err := c.WriteToUDPAddrPort([]byte(msg), server); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
		select {
		case <-exited:
			return errors.New("kamailio exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
	}
	return fmt.Errorf("no answer to OPTIONS at %s within %s", server, sipReadyWait)
}
