package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Limits are the pass criteria of a step: capacity is the largest step
// that stays within both.
type Limits struct {
	// MaxLossPct is the largest acceptable loss over both directions, in
	// percent (default 0.1).
	MaxLossPct float64 `json:"max_loss_pct"`
	// MaxP99 is the largest acceptable p99 added latency (default 5 ms).
	MaxP99 time.Duration `json:"max_p99_ns"`
}

func (l *Limits) setDefaults() {
	if l.MaxLossPct <= 0 {
		l.MaxLossPct = 0.1
	}
	if l.MaxP99 <= 0 {
		l.MaxP99 = 5 * time.Millisecond
	}
}

// StepConfig is the load of one step.
type StepConfig struct {
	Calls            int
	Duration         time.Duration
	Paths            []Path
	SetupConcurrency int
	Senders          int
	Spin             bool
	// HostMeter, when set, is the command that runs the host meter (see
	// [ServeHostMeter]), started with --cpu N for each of HostCPUs for the
	// length of the traffic phase.
	HostMeter []string
	HostCPUs  []int
}

// StepResult is one run of one step against one relay: the raw
// measurements and the derived [Figures].
type StepResult struct {
	Relay   string  `json:"relay"`
	Calls   int     `json:"calls"`
	Pinning string  `json:"pinning"`
	Setup   Setup   `json:"setup"`
	Traffic Traffic `json:"traffic"`
	// RelayCPU is the relay process's CPU time during the traffic run, from
	// /proc/PID/task/*/schedstat (ns resolution); RelayCPUTicks is the same
	// from utime+stime in /proc/PID/stat (10 ms ticks), kept as a check.
	RelayCPU      time.Duration `json:"relay_cpu_ns"`
	RelayCPUTicks time.Duration `json:"relay_cpu_ticks_ns"`
	// Softirq is the softirq time of the CPU the relay is pinned to during
	// the run (0 when the relay is not pinned).
	Softirq time.Duration `json:"softirq_ns"`
	// RSSIdle and RSSLoaded are the relay's VmRSS before the first call and
	// after the last call was set up.
	RSSIdle   int64 `json:"rss_idle_bytes"`
	RSSLoaded int64 `json:"rss_loaded_bytes"`
	// UDP is the change of the system-wide UDP error counters during the run.
	UDP UDPCounters `json:"udp"`
	// RelayDrops and GeneratorDrops are the receive-buffer drops counted on
	// the relay's and on the generator's own sockets (per-socket counters of
	// /proc/net/udp{,6}), which tells where loss happened.
	RelayDrops     uint64 `json:"relay_socket_drops"`
	GeneratorDrops uint64 `json:"generator_socket_drops"`
	// Host is what the host meter saw on each watched CPU during the
	// traffic phase (empty without a meter).
	Host    []HostStalls `json:"host,omitempty"`
	Figures Figures      `json:"figures"`
	Error   string       `json:"error,omitempty"`
}

// RunStep starts the relay, sets up cfg.Calls calls, runs traffic for
// cfg.Duration, measures, and stops the relay. A relay that cannot carry the
// step (setup fails, process exits) gives a result with Error set, not an
// error; the error return is for the harness's own failures and ctx.
func RunStep(ctx context.Context, spec RelaySpec, cfg StepConfig) (StepResult, error) {
	res := StepResult{Relay: spec.Name, Calls: cfg.Calls}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	// A relay that fails to start is retried on a fresh port: freeport
	// cannot reserve the port it found.
	var p *RelayProc
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if p, err = StartRelay(ctx, spec); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return res, err
	}
	defer p.Stop()
	res.Pinning = p.Pinning
	var procErr error
	if p.PID > 0 {
		res.RSSIdle, procErr = readRSS(p.PID)
	}
	load, err := NewLoad(ctx, LoadConfig{
		Server4: p.V4, Server6: p.V6,
		Username: spec.Username, Password: spec.Password, Realm: spec.Realm,
		Calls: cfg.Calls, Paths: cfg.Paths,
		SetupConcurrency: cfg.SetupConcurrency, Senders: cfg.Senders, Spin: cfg.Spin,
	})
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Error = "setup: " + err.Error()
		if p.Exited() {
			res.Error += "; relay exited: " + p.Output()
		}
		res.Figures = res.figures()
		return res, nil
	}
	defer load.Close()
	res.Setup = load.Setup()
	var cpu0, cpu1, tick0, tick1, soft0, soft1 time.Duration
	if p.PID > 0 {
		res.RSSLoaded, _ = readRSS(p.PID)
		cpu0, _ = readProcRuntime(p.PID)
		tick0, _ = readProcCPU(p.PID)
	}
	pinned := spec.CPU >= 0 && p.Pinning != "unpinned"
	if pinned {
		soft0, _ = readCPUSoftirq(spec.CPU)
	}
	udp0, _ := readUDPCounters()
	var meter *hostMeter
	if len(cfg.HostMeter) > 0 && len(cfg.HostCPUs) > 0 {
		meter = startHostMeter(ctx, cfg.HostMeter, cfg.HostCPUs)
	}
	tr, err := load.Run(ctx, cfg.Duration)
	res.Host = meter.stop()
	if err != nil {
		return res, err
	}
	udp1, _ := readUDPCounters()
	if p.PID > 0 {
		res.RelayDrops, _ = socketDrops(p.PID)
	}
	res.GeneratorDrops, _ = socketDrops(os.Getpid())
	if pinned {
		soft1, _ = readCPUSoftirq(spec.CPU)
	}
	if p.PID > 0 {
		tick1, _ = readProcCPU(p.PID)
		cpu1, err = readProcRuntime(p.PID)
		if err != nil && procErr == nil {
			procErr = err
		}
	}
	res.Traffic = tr
	res.RelayCPU = cpu1 - cpu0
	res.RelayCPUTicks = tick1 - tick0
	res.Softirq = soft1 - soft0
	res.UDP = udp1.Sub(udp0)
	if p.Exited() {
		res.Error = fmt.Sprintf("relay exited during the run: %s", p.Output())
	} else if procErr != nil && spec.Kind != KindExternal {
		res.Error = procErr.Error()
	}
	res.Figures = res.figures()
	return res, nil
}

// PinSelf pins every thread of this process to cpus and sets GOMAXPROCS
// to their number, so the generator uses exactly those cores. It returns a
// description for reports and a function that undoes both.
func PinSelf(cpus ...int) (string, func(), error) {
	if len(cpus) == 0 {
		return "unpinned", func() {}, errors.New("bench: pin generator: no CPU given")
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return "unpinned", func() {}, fmt.Errorf("bench: pin generator: %w", err)
	}
	if err := pinPID(os.Getpid(), cpus...); err != nil {
		return "unpinned", func() {}, fmt.Errorf("bench: pin generator to cpus %v: %w", cpus, err)
	}
	prev := runtime.GOMAXPROCS(len(cpus))
	undo := func() {
		runtime.GOMAXPROCS(prev)
		restoreAffinity(old)
	}
	return fmt.Sprintf("sched_setaffinity cpus %v, GOMAXPROCS %d", cpus, len(cpus)), undo, nil
}

func restoreAffinity(set unix.CPUSet) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = unix.SchedSetaffinity(tid, &set)
		}
	}
}

// NumCPU returns the CPUs this process may run on.
func NumCPU() int { return cpusFor(-1) }

// Renice sets the nice value of every thread of this process (Linux nice is
// per thread; threads and child processes created later inherit it from
// their creator), so a bench on a shared machine is not starved by
// unrelated work. It returns a function restoring the previous value.
func Renice(n int) (func(), error) {
	prev, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return func() {}, fmt.Errorf("bench: getpriority: %w", err)
	}
	// The raw syscall returns 20-nice.
	old := 20 - prev
	set := func(v int) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				if err := unix.Setpriority(unix.PRIO_PROCESS, tid, v); err != nil {
					return fmt.Errorf("task %d: %w", tid, err)
				}
			}
		}
		return nil
	}
	if err := set(n); err != nil {
		_ = set(old)
		return func() {}, fmt.Errorf("bench: renice %d: %w", n, err)
	}
	return func() { _ = set(old) }, nil
}
