package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/isthmusrelay/isthmus/internal/netns"
)

// Options configures a demo run.
type Options struct {
	// Binary is the isthmus binary run inside the namespaces (the relay and
	// the endpoints): os.Executable() for the CLI, a fresh build in tests.
	Binary string
	// Turnserver is coturn's turnserver; empty skips the coturn scenarios.
	Turnserver string
	// Packets is the number of RTP probes each endpoint sends (each way
	// then carries as many echoes too). Default 500.
	Packets int
	// Interval between probes. Default 20 ms (50 packets/s).
	Interval time.Duration
	// Drain bounds the wait for late packets. Default 5 s.
	Drain time.Duration
	// WorkDir holds per-scenario scratch files (coturn's config and
	// database). Default: a fresh temporary directory, removed afterwards.
	WorkDir string
	// Progress, when set, gets one line per scenario step.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Packets == 0 {
		o.Packets = 500
	}
	if o.Interval == 0 {
		o.Interval = 20 * time.Millisecond
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Second
	}
}

// Host names of the topology, as scenarios refer to them.
const (
	HostUA6     = "ua6"
	HostUA4     = "ua4"
	HostLegacy4 = "legacy4"
	HostDS1     = "ds1"
	HostDS2     = "ds2"
)

func (t *Topology) host(name string) *netns.Namespace {
	switch name {
	case HostUA6:
		return t.UA6
	case HostUA4:
		return t.UA4
	case HostLegacy4:
		return t.Legacy4
	case HostDS1:
		return t.DS1
	case HostDS2:
		return t.DS2
	}
	return nil
}

// Side is one endpoint of a scenario.
type Side struct {
	Host string // HostUA6, ...
	Role string // RoleOffer, ...
}

// Scenario is one call of the demo: who offers, who answers, through which
// relay, and what must hold afterwards.
type Scenario struct {
	ID       string
	Title    string
	Relay    RelayKind // empty: no relay runs
	Offerer  Side
	Answerer Side
	// DualStack adds the dual-stack hosts to the topology.
	DualStack bool
	// Expect adds the scenario's own checks to a finished run.
	Expect func(r *Result)
}

// EndpointResult is what one endpoint reported.
type EndpointResult struct {
	Side
	Path  Path
	Stats Stats
}

// Check is one assertion about a run, named after the rule it checks.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Result is the outcome of one scenario run.
type Result struct {
	Scenario Scenario
	Packets  int
	Offerer  EndpointResult
	Answerer EndpointResult
	// Offer and Answer are the SDP bodies as the orchestrator forwarded them.
	Offer, Answer string
	// RelayKernel counts UDP datagrams into and IP packets out of the relay
	// namespace, by family, during the media phase (after both connected,
	// until both reported): the relay's work seen by the kernel.
	RelayKernel KernelCounters
	// RelayMetrics holds the isthmus relay's own packet counters by family
	// and direction over the media phase; nil for other relays.
	RelayMetrics *RelayPackets
	Checks       []Check
	Err          error
	Elapsed      time.Duration
}

// Passed reports whether the run completed and every check held.
func (r *Result) Passed() bool { return allPassed(r.Err, r.Checks) }

// Check records an assertion.
func (r *Result) Check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, newCheck(name, ok, format, args...))
}

// allPassed reports a run that ended without error and whose every check,
// of at least one, held.
func allPassed(err error, checks []Check) bool {
	if err != nil || len(checks) == 0 {
		return false
	}
	for _, c := range checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func newCheck(name string, ok bool, format string, args ...any) Check {
	return Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)}
}

// ErrSkipped is the Result.Err of a scenario that could not run here (a
// relay program is not installed).
var ErrSkipped = errors.New("scenario skipped")

// Run runs one scenario in a topology of its own and tears the topology
// down before returning, whatever happened. Cancelling ctx (Ctrl-C) aborts
// the run and still tears down.
func Run(ctx context.Context, sc Scenario, opt Options) (res *Result) {
	opt.defaults()
	res = &Result{Scenario: sc, Packets: opt.Packets}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	if sc.Relay == RelayCoturn && opt.Turnserver == "" {
		res.Err = fmt.Errorf("demo: scenario %s: %w: coturn's turnserver is not installed", sc.ID, ErrSkipped)
		return res
	}
	media := time.Duration(opt.Packets) * opt.Interval
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second+media+opt.Drain)
	defer cancel()

	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "scenario %s: %s\n", sc.ID, fmt.Sprintf(format, args...))
		}
	}

	run, err := netns.NewRun()
	if err != nil {
		res.Err = err
		return res
	}
	defer func() {
		if err := run.Close(); err != nil && res.Err == nil {
			res.Err = fmt.Errorf("demo: scenario %s: teardown: %w", sc.ID, err)
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
	dir = filepath.Join(dir, "scenario-"+sc.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		res.Err = err
		return res
	}

	progress("building namespaces (run %s)", run.ID)
	topo, err := BuildTopology(ctx, run, TopologyOptions{DualStack: sc.DualStack})
	if err != nil {
		res.Err = err
		return res
	}

	var relay *relayProc
	if sc.Relay != "" {
		progress("starting %s relay", sc.Relay)
		relay, err = startRelay(ctx, sc.Relay, topo.Relay, opt.Binary, opt.Turnserver, dir)
		// Stopped before the namespaces go, so its last log lines are ours.
		defer relay.stop()
		if err != nil {
			res.Err = err
			return res
		}
	}

	res.Err = exchange(ctx, sc, opt, topo, relay, res, progress)
	if res.Err == nil {
		checkCommon(res)
		if sc.Expect != nil {
			sc.Expect(res)
		}
	}
	return res
}

// exchange starts both endpoints, forwards the offer and the answer, lets
// the media run and collects the results.
func exchange(ctx context.Context, sc Scenario, opt Options, topo *Topology, relay *relayProc, res *Result, progress func(string, ...any)) error {
	agentOpts := func(s Side) AgentOptions {
		o := AgentOptions{
			Role:    s.Role,
			Probe:   ProbeConfig{Packets: opt.Packets, Interval: opt.Interval, Drain: opt.Drain},
			Timeout: time.Until(deadlineOf(ctx)),
		}
		switch s.Host {
		case HostLegacy4:
			o.Addr = Legacy4Addr.String()
		case HostUA4:
			o.Addr = UA4Addr.String()
		}
		if relay != nil {
			o.User, o.Pass = demoUser, relay.pass
			switch s.Host {
			case HostUA6:
				o.TURN = []string{turnURL(true)}
			case HostUA4:
				o.TURN = []string{turnURL(false)}
			case HostDS1, HostDS2:
				o.TURN = []string{turnURL(true), turnURL(false)}
			}
		}
		return o
	}
	start := func(s Side) (*endpointProc, error) {
		ns := topo.host(s.Host)
		if ns == nil {
			return nil, fmt.Errorf("demo: scenario %s: no host %q in the topology", sc.ID, s.Host)
		}
		args := append([]string{"demo", "agent"}, agentOpts(s).Args()...)
		return startEndpoint(s.Host+"/"+s.Role, ns.Command(ctx, opt.Binary, args...))
	}

	progress("starting %s (%s) and %s (%s)", sc.Offerer.Host, sc.Offerer.Role, sc.Answerer.Host, sc.Answerer.Role)
	off, err := start(sc.Offerer)
	if err != nil {
		return err
	}
	defer off.kill()
	ans, err := start(sc.Answerer)
	if err != nil {
		return err
	}
	defer ans.kill()

	m, err := off.expect(ctx, EventOffer)
	if err != nil {
		return err
	}
	res.Offer = m.SDP
	if err := ans.send(m); err != nil {
		return err
	}
	if m, err = ans.expect(ctx, EventAnswer); err != nil {
		return err
	}
	res.Answer = m.SDP
	if err := off.send(m); err != nil {
		return err
	}
	progress("offer/answer done, connecting")

	res.Offerer.Side, res.Answerer.Side = sc.Offerer, sc.Answerer
	for _, e := range []struct {
		p   *endpointProc
		out *EndpointResult
	}{{off, &res.Offerer}, {ans, &res.Answerer}} {
		m, err := e.p.expect(ctx, EventConnected)
		if err != nil {
			return err
		}
		if m.Path == nil {
			return fmt.Errorf("demo: %s: %w: connected without a path", e.p.name, ErrEndpoint)
		}
		e.out.Path = *m.Path
	}

	var udpBefore KernelCounters
	var metricsBefore *RelayPackets
	if relay != nil {
		if udpBefore, err = readKernelCounters(relay.ns); err != nil {
			return err
		}
		if relay.kind == RelayIsthmus {
			if metricsBefore, err = relay.packets(ctx); err != nil {
				return err
			}
		}
	}

	progress("media: %d probes each way at one per %s", opt.Packets, opt.Interval)
	for _, p := range []*endpointProc{off, ans} {
		if err := p.send(Message{Event: EventStart}); err != nil {
			return err
		}
	}
	for _, e := range []struct {
		p   *endpointProc
		out *EndpointResult
	}{{off, &res.Offerer}, {ans, &res.Answerer}} {
		m, err := e.p.expect(ctx, EventResult)
		if err != nil {
			return err
		}
		if m.Stats == nil {
			return fmt.Errorf("demo: %s: %w: result without stats", e.p.name, ErrEndpoint)
		}
		e.out.Stats = *m.Stats
	}

	if relay != nil {
		after, err := readKernelCounters(relay.ns)
		if err != nil {
			return err
		}
		res.RelayKernel = after.Sub(udpBefore)
		if relay.kind == RelayIsthmus {
			d, err := relay.packetsSince(ctx, *metricsBefore, relayedFamilies(res), uint64(2*opt.Packets))
			if err != nil {
				return err
			}
			res.RelayMetrics = &d
		}
	}

	for _, p := range []*endpointProc{off, ans} {
		if err := p.finish(ctx); err != nil {
			return err
		}
	}
	progress("done")
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}
