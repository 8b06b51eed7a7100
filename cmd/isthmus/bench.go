package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/isthmusrelay/isthmus/bench"
)

func init() {
	register("bench", "load-test a TURN relay; 'bench compare' runs ours vs coturn side by side", runBench)
}

// benchFlags are the flags shared by `isthmus bench` and `isthmus bench compare`.
type benchFlags struct {
	calls, maxCalls, repeats  int
	steps, paths              string
	duration, timeout, maxP99 time.Duration
	maxLoss                   float64
	relayCPU                  int
	genCPUs                   string
	noPin, keepGoing, quiet   bool
	noHostMeter               bool
	genCPUList                []int // the generator's CPUs once pinned
	minPort, maxPort          int
	setupConc, senders        int
	genWait                   string
	user, realm               string
	jsonOut, svgOut           string
	cpuProfile, traceOut      string
	nice                      int
}

func (bf *benchFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&bf.calls, "calls", 0, "run a single step of this many calls (instead of the step series)")
	fs.StringVar(&bf.steps, "steps", "", "comma-separated call counts to step through (default 50,100,200,... up to --max-calls)")
	fs.IntVar(&bf.maxCalls, "max-calls", 3200, "never place more calls than this")
	fs.IntVar(&bf.repeats, "repeats", 0, "runs per relay per step (default 1; compare: 3, minimum 3)")
	fs.DurationVar(&bf.duration, "duration", 5*time.Second, "traffic time per run")
	fs.DurationVar(&bf.timeout, "timeout", 15*time.Minute, "bound on the whole command; steps not reached are reported missing")
	fs.StringVar(&bf.paths, "paths", "ip6>ip4,ip4>ip6", "call shapes CLIENT>RELAY used round-robin: ip6>ip4 (the mission's case), ip4>ip6 (mirror), ip4>ip4, ip6>ip6")
	fs.Float64Var(&bf.maxLoss, "max-loss", 0.1, "a step fails above this loss, in percent")
	fs.DurationVar(&bf.maxP99, "max-p99", 5*time.Millisecond, "a step fails above this p99 added latency")
	fs.IntVar(&bf.relayCPU, "relay-cpu", 1, "CPU the relay is pinned to (taskset -c)")
	fs.StringVar(&bf.genCPUs, "gen-cpus", "0", "CPUs the generator (this process) is pinned to, e.g. 0 or 0,2,3")
	fs.BoolVar(&bf.noPin, "no-pin", false, "do not pin relay and generator to CPUs")
	fs.BoolVar(&bf.noHostMeter, "no-host-meter", false, "do not watch the relay's and the generator's CPUs for host stalls (a real-time thread per CPU, see docs/bench.md)")
	fs.BoolVar(&bf.keepGoing, "keep-going", false, "run every step even after a relay failed one")
	fs.BoolVar(&bf.quiet, "quiet", false, "no progress line per run on stderr")
	fs.IntVar(&bf.minPort, "min-port", bench.DefaultMinPort, "lowest relay port of a started relay")
	fs.IntVar(&bf.maxPort, "max-port", bench.DefaultMaxPort, "highest relay port of a started relay")
	fs.IntVar(&bf.setupConc, "setup-concurrency", 16, "calls set up in parallel during ramp-up")
	fs.StringVar(&bf.genWait, "gen-wait", "auto", "how the generator waits between packets: spin (busy-poll its sockets, never sleep), sleep (timers and the netpoller), or auto (spin when pinned to one CPU of its own)")
	fs.IntVar(&bf.senders, "senders", 0, "sender goroutines sharing the 20 ms schedule (default: one per generator CPU)")
	fs.StringVar(&bf.user, "user", bench.DefaultUsername+":"+bench.DefaultPassword, "long-term credential NAME:PASSWORD (given to started relays)")
	fs.StringVar(&bf.realm, "realm", bench.DefaultRealm, "realm")
	fs.StringVar(&bf.jsonOut, "json", "", "write the full report as JSON to this file")
	fs.StringVar(&bf.svgOut, "svg", "", "write a plot of loss and p99 latency against calls to this SVG file")
	fs.StringVar(&bf.traceOut, "trace", "", "write a Go execution trace of the generator to this file (go tool trace)")
	fs.IntVar(&bf.nice, "nice", -10, "nice value for the generator and the relays it starts (0 keeps the current one); a negative value keeps unrelated work on a shared machine from starving the measurement")
	fs.StringVar(&bf.cpuProfile, "cpuprofile", "", "write a CPU profile of the generator to this file (go tool pprof)")
}

// parse parses args into fs (whose shared flags bf registered) and turns
// them into a config; when ok is false the command ends with code (0 after
// --help, 2 after a bad flag, named on stderr).
func (bf *benchFlags) parse(name string, fs *flag.FlagSet, args []string, stderr io.Writer) (cfg bench.Config, code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	cfg, err := bf.config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cfg, 2, false
	}
	return cfg, 0, true
}

// config turns the shared flags into a bench.Config (without relays).
func (bf *benchFlags) config(stderr io.Writer) (bench.Config, error) {
	cfg := bench.Config{
		MaxCalls: bf.maxCalls, Duration: bf.duration, Repeats: bf.repeats,
		Limits:           bench.Limits{MaxLossPct: bf.maxLoss, MaxP99: bf.maxP99},
		SetupConcurrency: bf.setupConc, Senders: bf.senders, KeepGoing: bf.keepGoing,
	}
	if !bf.quiet {
		cfg.Progress = stderr
	}
	if bf.calls > 0 {
		cfg.Steps = []int{bf.calls}
	} else if bf.steps != "" {
		for _, s := range strings.Split(bf.steps, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return cfg, fmt.Errorf("--steps: %q is not a positive call count", s)
			}
			cfg.Steps = append(cfg.Steps, n)
		}
	}
	for _, s := range strings.Split(bf.paths, ",") {
		p, err := bench.ParsePath(strings.TrimSpace(s))
		if err != nil {
			return cfg, fmt.Errorf("--paths: %w", err)
		}
		cfg.Paths = append(cfg.Paths, p)
	}
	if bf.genWait != "auto" && bf.genWait != "spin" && bf.genWait != "sleep" {
		return cfg, fmt.Errorf("--gen-wait %q: want auto, spin or sleep", bf.genWait)
	}
	if bf.maxPort-bf.minPort+1 < bf.maxCalls {
		return cfg, fmt.Errorf("--min-port %d..--max-port %d holds fewer relay ports than --max-calls %d", bf.minPort, bf.maxPort, bf.maxCalls)
	}
	return cfg, nil
}

func (bf *benchFlags) spec(name string, kind bench.RelayKind, binary string) (bench.RelaySpec, error) {
	user, pass, ok := strings.Cut(bf.user, ":")
	if !ok || user == "" {
		return bench.RelaySpec{}, fmt.Errorf("--user %q: want NAME:PASSWORD", bf.user)
	}
	cpu := bf.relayCPU
	if bf.noPin {
		cpu = -1
	}
	return bench.RelaySpec{
		Name: name, Kind: kind, Binary: binary, CPU: cpu,
		Realm: bf.realm, Username: user, Password: pass,
		MinPort: bf.minPort, MaxPort: bf.maxPort,
	}, nil
}

// pin pins (and renices) the generator when asked and possible, and says
// what it did.
func (bf *benchFlags) pin(stderr io.Writer) (string, func()) {
	desc, undo := bf.pinCPU(stderr)
	if bf.nice == 0 {
		return desc, undo
	}
	unnice, err := bench.Renice(bf.nice)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v; priority unchanged\n", err)
		return desc, undo
	}
	return fmt.Sprintf("%s, nice %d (relays inherit it)", desc, bf.nice), func() { unnice(); undo() }
}

func (bf *benchFlags) pinCPU(stderr io.Writer) (string, func()) {
	if bf.noPin {
		return "unpinned (--no-pin)", func() {}
	}
	if n := bench.NumCPU(); n < 2 {
		fmt.Fprintf(stderr, "bench: only %d CPU available: relay and generator are not pinned apart\n", n)
		bf.relayCPU = -1
		return fmt.Sprintf("unpinned (only %d CPU)", n), func() {}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		fmt.Fprintln(stderr, "bench: taskset not found: relays are pinned with sched_setaffinity after they start")
	}
	var cpus []int
	for _, f := range strings.Split(bf.genCPUs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n == bf.relayCPU {
			fmt.Fprintf(stderr, "bench: --gen-cpus %q: want CPU numbers other than --relay-cpu %d; generator left unpinned\n", bf.genCPUs, bf.relayCPU)
			return "unpinned (bad --gen-cpus)", func() {}
		}
		cpus = append(cpus, n)
	}
	desc, undo, err := bench.PinSelf(cpus...)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v; generator left unpinned\n", err)
		return "unpinned (" + err.Error() + ")", func() {}
	}
	bf.genCPUList = cpus
	return desc, undo
}

// hostMeter has every run watch the relay's and the generator's CPUs with
// `isthmus bench host-meter` (this binary) unless --no-host-meter. Unpinned,
// there is no CPU to watch.
func (bf *benchFlags) hostMeter(cfg *bench.Config, stderr io.Writer) {
	if bf.noHostMeter || bf.relayCPU < 0 || len(bf.genCPUList) == 0 {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "bench: host meter off: %v\n", err)
		return
	}
	cfg.HostMeter = []string{exe, "bench", "host-meter"}
	cfg.HostCPUs = append([]int{bf.relayCPU}, bf.genCPUList...)
}

// runHostMeter is `isthmus bench host-meter --cpu N`, started by the bench
// itself: it samples CPU N until stdin closes and prints one JSON object.
func runHostMeter(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("isthmus bench host-meter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cpu := fs.Int("cpu", -1, "CPU to watch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpu < 0 {
		fmt.Fprintln(stderr, "isthmus bench host-meter: --cpu: want the number of the CPU to watch")
		return 2
	}
	if err := bench.ServeHostMeter(*cpu, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "isthmus bench host-meter: %v\n", err)
		return 1
	}
	return 0
}

// profile starts the generator CPU profile when asked; the returned func stops it.
func (bf *benchFlags) profile(stderr io.Writer) func() {
	stopTrace := func() {}
	if bf.traceOut != "" {
		if f, err := os.Create(bf.traceOut); err != nil {
			fmt.Fprintf(stderr, "bench: trace: %v\n", err)
		} else if err := trace.Start(f); err != nil {
			fmt.Fprintf(stderr, "bench: trace: %v\n", err)
			_ = f.Close()
		} else {
			stopTrace = func() { trace.Stop(); _ = f.Close() }
		}
	}
	if bf.cpuProfile == "" {
		return stopTrace
	}
	f, err := os.Create(bf.cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "bench: cpuprofile: %v\n", err)
		return stopTrace
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "bench: cpuprofile: %v\n", err)
		_ = f.Close()
		return stopTrace
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		stopTrace()
	}
}

func (bf *benchFlags) write(rep *bench.Report, stdout, stderr io.Writer) int {
	code := 0
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		code = 1
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{bf.jsonOut, rep.WriteJSON}, {bf.svgOut, rep.WriteSVG}} {
		if out.path == "" {
			continue
		}
		f, err := os.Create(out.path)
		if err == nil {
			err = out.write(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench: write %s: %v\n", out.path, err)
			code = 1
		}
	}
	return code
}

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "compare" {
		return runBenchCompare(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "host-meter" {
		return runHostMeter(args[1:], os.Stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("isthmus bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf benchFlags
	bf.register(fs)
	relay := fs.String("relay", "isthmus", "relay to start and load: isthmus (this binary's relay), coturn, or external (already running at --target/--target6)")
	binary := fs.String("binary", "", "relay executable (default: this binary for isthmus, /usr/bin/turnserver for coturn)")
	relayCmd := fs.String("relay-cmd", "", "start this command line (split on spaces) as the relay; it must listen on --target/--target6")
	target4 := fs.String("target", "", "IPv4 loopback listening address of an external or --relay-cmd relay, e.g. 127.0.0.1:3478")
	target6 := fs.String("target6", "", "IPv6 loopback listening address of an external or --relay-cmd relay, e.g. [::1]:3478")
	relayPID := fs.Int("relay-pid", 0, "process id of an external relay, for CPU and memory figures")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus bench [flags]          load one relay, stepping calls up until loss or latency fails")
		fmt.Fprintln(stderr, "       isthmus bench compare [flags]  ours vs coturn, ABAB, medians and ratios")
		fs.PrintDefaults()
	}
	cfg, code, ok := bf.parse("isthmus bench", fs, args, stderr)
	if !ok {
		return code
	}
	var spec bench.RelaySpec
	var err error
	switch {
	case *relayCmd != "":
		spec, err = bf.spec("command", bench.KindCommand, "")
		spec.Command = strings.Fields(*relayCmd)
	case *relay == "isthmus":
		bin := *binary
		if bin == "" {
			bin, err = os.Executable()
		}
		if err == nil {
			spec, err = bf.spec("isthmus", bench.KindIsthmus, bin)
		}
	case *relay == "coturn":
		bin := *binary
		if bin == "" {
			bin = "/usr/bin/turnserver"
		}
		spec, err = bf.spec("coturn", bench.KindCoturn, bin)
	case *relay == "external":
		spec, err = bf.spec("external", bench.KindExternal, "")
		spec.PID = *relayPID
		spec.CPU = -1
	default:
		err = fmt.Errorf("--relay %q: want isthmus, coturn or external", *relay)
	}
	if err == nil && (spec.Kind == bench.KindCommand || spec.Kind == bench.KindExternal) {
		for _, t := range []struct {
			s   string
			dst *netip.AddrPort
		}{{*target4, &spec.Target4}, {*target6, &spec.Target6}} {
			if t.s == "" {
				continue
			}
			if *t.dst, err = netip.ParseAddrPort(t.s); err != nil {
				err = fmt.Errorf("--target %q: %w", t.s, err)
				break
			}
		}
		if err == nil && !spec.Target4.IsValid() && !spec.Target6.IsValid() {
			err = errors.New("--relay-cmd and --relay external need --target and/or --target6")
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "isthmus bench: %v\n", err)
		return 2
	}
	cfg.Relays = []bench.RelaySpec{spec}
	return bf.execute("isthmus bench", cfg, bench.Run, false, stdout, stderr)
}

// execute runs a configured bench or compare: it bounds it by signals and
// --timeout, pins the generator (and, with repinRelays, points every relay
// at the relay CPU pinning settled on), adds the host meter and profiling,
// and writes the report, also a partial one after an error.
func (bf *benchFlags) execute(name string, cfg bench.Config, run func(context.Context, bench.Config) (*bench.Report, error), repinRelays bool, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, bf.timeout)
	defer cancel()
	desc, undo := bf.pin(stderr)
	defer undo()
	if repinRelays {
		for i := range cfg.Relays {
			cfg.Relays[i].CPU = relayCPUOf(bf)
		}
	}
	switch bf.genWait {
	case "spin":
		cfg.Spin = true
	case "auto":
		cfg.Spin = len(bf.genCPUList) == 1 && bf.relayCPU >= 0
	}
	if cfg.Spin {
		desc += ", spinning (--gen-wait)"
	}
	cfg.GeneratorPinning = desc
	bf.hostMeter(&cfg, stderr)
	defer bf.profile(stderr)()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if rep == nil {
			return 1
		}
		bf.write(rep, stdout, stderr)
		return 1
	}
	return bf.write(rep, stdout, stderr)
}

func runBenchCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("isthmus bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var bf benchFlags
	bf.register(fs)
	ours := fs.String("ours", "", "isthmus executable whose relay is compared (default: this binary)")
	coturn := fs.String("coturn", "/usr/bin/turnserver", "coturn turnserver executable")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: isthmus bench compare [flags]")
		fmt.Fprintln(stderr, "Starts our relay and coturn with equivalent settings, pins each relay to --relay-cpu and the")
		fmt.Fprintln(stderr, "generator to --gen-cpus, alternates them ABAB (--repeats, at least 3) per step and prints")
		fmt.Fprintln(stderr, "medians and the ratio isthmus/coturn for every figure.")
		fs.PrintDefaults()
	}
	cfg, code, ok := bf.parse("isthmus bench compare", fs, args, stderr)
	if !ok {
		return code
	}
	bin := *ours
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "isthmus bench compare: find own executable: %v\n", err)
			return 1
		}
	}
	if _, err := os.Stat(*coturn); err != nil {
		fmt.Fprintf(stderr, "isthmus bench compare: coturn: %v (install the Debian package coturn)\n", err)
		return 1
	}
	a, err := bf.spec("isthmus", bench.KindIsthmus, bin)
	if err != nil {
		fmt.Fprintf(stderr, "isthmus bench compare: %v\n", err)
		return 2
	}
	b, _ := bf.spec("coturn", bench.KindCoturn, *coturn)
	cfg.Relays = []bench.RelaySpec{a, b}
	return bf.execute("isthmus bench compare", cfg, bench.Compare, true, stdout, stderr)
}

func relayCPUOf(bf *benchFlags) int {
	if bf.noPin {
		return -1
	}
	return bf.relayCPU
}
