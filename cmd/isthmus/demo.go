package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/isthmusrelay/isthmus/internal/demo"
	"github.com/isthmusrelay/isthmus/internal/netns"
)

func init() {
	register("demo", "IPv6-only and IPv4-only phones call each other through the relay, in network namespaces (root)", runDemo)
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "agent" {
		// Hidden: one endpoint of a scenario, started by the demo itself
		// inside a namespace and driven over stdin/stdout.
		return demo.RunAgent(args[1:], os.Stdin, stdout, stderr)
	}

	fs := flag.NewFlagSet("isthmus demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	packets := fs.Int("packets", 500, "RTP probes each endpoint sends (each way also carries as many echoes)")
	interval := fs.Duration("interval", 20*time.Millisecond, "time between probes (20ms = 50 packets/s, a G.711 call)")
	list := fs.String("scenarios", "", "comma-separated scenario IDs (1,2,3,4,5.1,5.2); default 1,2 and, with coturn installed, 5.1,5.2")
	all := fs.Bool("all", false, "run all six scenarios (1,2,3,4,5.1,5.2)")
	turnserver := fs.String("turnserver", "", "coturn's turnserver binary for scenarios 5.x (default: looked up in PATH)")
	verbose := fs.Bool("v", false, "print each scenario's steps to stderr")
	noPicture := fs.Bool("no-picture", false, "print only the table")
	sipCall := fs.Bool("sip", false, "place the SIP call instead: IPv6-only `isthmus phone` -> Kamailio (dual stack, double Record-Route) -> IPv4-only sipp UAS, media through the relay (needs kamailio, sipp)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sudo isthmus demo [flags]

Builds the network of RFC 6157 Figure 1 in Linux network namespaces (a dual-stack relay at
192.0.2.1 and 2001:db8::1, an IPv6-only phone 2001:db8::10, an IPv4-only phone
192.0.2.10 and a legacy IPv4 phone 192.0.2.20), places real calls between
them, and prints a table and a sequence picture. Needs root; touches nothing
outside the namespaces it creates, and removes them all, also on Ctrl-C.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "isthmus demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "isthmus demo: creating network namespaces needs root.")
		fmt.Fprintln(stderr, "Run it as root, e.g.:  sudo go run ./cmd/isthmus demo   (or: sudo isthmus demo)")
		return 2
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fmt.Fprintln(stderr, "isthmus demo: the ip command (iproute2) is missing: apt-get install iproute2")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "isthmus demo: cannot find my own binary: %v\n", err)
		return 1
	}
	opt := demo.Options{Binary: self, Packets: *packets, Interval: *interval}
	if *packets <= 0 || *interval <= 0 {
		fmt.Fprintln(stderr, "isthmus demo: --packets and --interval must be positive")
		return 2
	}
	if *turnserver != "" {
		opt.Turnserver = *turnserver
	} else if p, err := exec.LookPath("turnserver"); err == nil {
		opt.Turnserver = p
	}
	if *verbose {
		opt.Progress = stderr
	}

	scenarios, err := pickScenarios(*list, *all, opt.Turnserver != "")
	if err != nil {
		fmt.Fprintf(stderr, "isthmus demo: %v\n", err)
		return 2
	}
	if opt.Turnserver == "" {
		fmt.Fprintln(stderr, "isthmus demo: coturn's turnserver not found: the coturn scenarios (5.x) are skipped (apt-get install coturn)")
	}

	// Ctrl-C or SIGTERM cancels the scenarios; each tears its namespaces
	// down on the way out.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if stale, err := netns.Sweep(ctx); err != nil {
		fmt.Fprintf(stderr, "isthmus demo: removing namespaces of earlier runs: %v\n", err)
	} else if len(stale) > 0 {
		fmt.Fprintf(stderr, "isthmus demo: removed %d namespaces left by an earlier run: %s\n", len(stale), strings.Join(stale, " "))
	}

	if *sipCall {
		return runDemoSIP(ctx, opt, stdout, stderr)
	}

	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = s.ID
	}
	fmt.Fprintf(stderr, "isthmus demo: running scenarios %s, %d RTP probes each way at one per %s ...\n", strings.Join(ids, ", "), opt.Packets, opt.Interval)
	results := demo.RunAll(ctx, scenarios, opt)

	_ = demo.WriteTable(stdout, results)
	if !*noPicture {
		fmt.Fprintln(stdout)
		for _, r := range results {
			demo.WritePicture(stdout, r)
		}
	}
	demo.WriteFailures(stderr, results)

	code := 0
	for _, r := range results {
		if !r.Passed() && !errors.Is(r.Err, demo.ErrSkipped) {
			code = 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "isthmus demo: interrupted; namespaces removed")
		code = 1
	}
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(stderr, "isthmus demo: namespaces still present after teardown: %s\n", strings.Join(left, " "))
		code = 1
	}
	return code
}

func pickScenarios(list string, all, haveCoturn bool) ([]demo.Scenario, error) {
	every := demo.Scenarios()
	if all {
		return every, nil
	}
	if list == "" {
		var out []demo.Scenario
		for _, s := range demo.DefaultScenarios() {
			if s.Relay != demo.RelayCoturn || haveCoturn {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []demo.Scenario
	for _, id := range strings.Split(list, ",") {
		found := false
		for _, s := range every {
			if s.ID == strings.TrimSpace(id) {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (have 1, 2, 3, 4, 5.1, 5.2)", id)
		}
	}
	return out, nil
}

// leftovers lists this process's namespaces that still exist.
func leftovers() []string {
	names, err := netns.List(context.Background())
	if err != nil {
		return nil
	}
	prefix := fmt.Sprintf("%s%d-", netns.Prefix, os.Getpid())
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			left = append(left, n)
		}
	}
	return left
}

// runDemoSIP is "isthmus demo --sip": RFC 6157's call with real SIP.
func runDemoSIP(ctx context.Context, opt demo.Options, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "isthmus demo: SIP call, %d RTP packets at one per %s ...\n", opt.Packets, opt.Interval)
	r := demo.RunSIP(ctx, opt)
	fmt.Fprintln(stdout, "SIP call: IPv6-only isthmus phone (2001:db8::10) -> Kamailio (192.0.2.1, 2001:db8::1) -> IPv4-only sipp (192.0.2.10)")
	for _, l := range r.Phone {
		fmt.Fprintf(stdout, "  phone  %s\n", l)
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(stdout, "  %s   %s: %s\n", mark, c.Name, c.Detail)
	}
	fmt.Fprintf(stdout, "  (%s)\n", r.Elapsed.Round(100*time.Millisecond))
	code := 0
	if r.Err != nil {
		fmt.Fprintf(stderr, "isthmus demo: %v\n", r.Err)
		code = 1
	} else if !r.Passed() {
		code = 1
	}
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(stderr, "isthmus demo: namespaces still present after teardown: %s\n", strings.Join(left, " "))
		code = 1
	}
	return code
}
