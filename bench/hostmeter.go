package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The host meter answers "was it the relay or the machine?". A virtual
// machine's CPUs can stop for milliseconds while the hypervisor runs
// something else; no relay can forward a packet on a stopped CPU, so those
// stalls land in the added latency of every relay alike. On the 2-vCPU VM
// this project is developed on, a real-time thread that sleeps 1 ms at a time
// wakes more than 2 ms late about 3 % of the time, up to 24 ms, with nothing
// else running: the same order as the 5 ms p99 limit.
//
// The meter is a small real-time (SCHED_FIFO) thread pinned to each CPU the
// bench uses, in a process of its own (`isthmus bench host-meter`), so it
// never waits for the generator's Go scheduler: it sleeps HostMeterPeriod at
// a time and records how late it wakes. At the highest real-time priority
// class nothing on the CPU but interrupts and the hypervisor can delay it, so
// its lateness is the platform's, not the relay's. Its cost is one short
// wake-up per period on each CPU; its CPU time is its own process's, not the
// relay's.

// HostMeterPeriod is how long the meter sleeps between samples.
const HostMeterPeriod = time.Millisecond

// hostStallFloor is the lateness below which a wake-up counts as on time
// (timer slack and the wake-up itself take tens of microseconds).
const hostStallFloor = 200 * time.Microsecond

// HostStalls is what the meter saw on one CPU during a run.
type HostStalls struct {
	CPU     int `json:"cpu"`
	Samples int `json:"samples"`
	// RealTime is set when the meter ran as SCHED_FIFO; without the
	// privilege it runs as a normal thread and also measures the load on
	// its CPU, so its figures are then an upper bound.
	RealTime bool `json:"realtime"`
	// Late quantiles: how much later than asked the meter woke.
	P50  time.Duration `json:"late_p50_ns"`
	P99  time.Duration `json:"late_p99_ns"`
	P999 time.Duration `json:"late_p999_ns"`
	Max  time.Duration `json:"late_max_ns"`
	// StalledPct is the share of the run's time the CPU was unavailable
	// beyond hostStallFloor, in percent.
	StalledPct float64 `json:"stalled_pct"`
	Error      string  `json:"error,omitempty"`
}

// MeasureHost pins the calling goroutine's thread to cpu, makes it real-time
// if allowed, and samples wake-up lateness until stop is closed. It is the
// body of `isthmus bench host-meter`; run it in a process of its own.
func MeasureHost(cpu int, stop <-chan struct{}) (HostStalls, error) {
	hs := HostStalls{CPU: cpu}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return hs, fmt.Errorf("bench: host meter: pin to cpu %d: %w", cpu, err)
	}
	// Reset-on-fork: threads the Go runtime clones from this one must not
	// inherit the real-time policy (a spinning real-time runtime thread
	// would starve the relay or the generator).
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: schedFIFO, Priority: 1, Flags: schedFlagResetOnFork}
	hs.RealTime = unix.SchedSetAttr(0, &attr, 0) == nil
	var stopped atomic.Bool
	go func() { <-stop; stopped.Store(true) }()

	var h Histogram
	var stalled time.Duration
	start := time.Now()
	sleep := unix.NsecToTimespec(int64(HostMeterPeriod))
	for !stopped.Load() {
		t0 := time.Now()
		if err := unix.Nanosleep(&sleep, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return hs, fmt.Errorf("bench: host meter: nanosleep: %w", err)
		}
		late := max(time.Since(t0)-HostMeterPeriod, 0)
		h.Record(late)
		hs.Samples++
		if late > hostStallFloor {
			stalled += late - hostStallFloor
		}
	}
	hs.P50, hs.P99, hs.P999, hs.Max = h.Quantile(0.50), h.Quantile(0.99), h.Quantile(0.999), h.Max()
	if el := time.Since(start); el > 0 {
		hs.StalledPct = 100 * float64(stalled) / float64(el)
	}
	return hs, nil
}

// SCHED_FIFO and SCHED_FLAG_RESET_ON_FORK from the kernel's sched.h
// (x/sys/unix has no constants for them).
const (
	schedFIFO            = 1
	schedFlagResetOnFork = 0x01
)

// hostMeter runs one meter process per watched CPU for the length of a run.
type hostMeter struct {
	procs []*meterProc
}

type meterProc struct {
	cpu   int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
	// errOut keeps what a failing meter said, for the run's report.
	errOut bytes.Buffer
}

// startHostMeter starts command (the meter subcommand, e.g. [isthmus bench
// host-meter]) with --cpu N for every CPU in cpus. A meter that cannot start
// is reported by stop, not here: the run goes on without it.
func startHostMeter(ctx context.Context, command []string, cpus []int) *hostMeter {
	m := &hostMeter{}
	for _, cpu := range cpus {
		args := append(append([]string(nil), command[1:]...), "--cpu", strconv.Itoa(cpu))
		mp := &meterProc{cpu: cpu, cmd: exec.CommandContext(ctx, command[0], args...)}
		mp.cmd.Stdout = &mp.out
		mp.cmd.Stderr = &mp.errOut
		var err error
		if mp.stdin, err = mp.cmd.StdinPipe(); err == nil {
			err = mp.cmd.Start()
		}
		if err != nil {
			mp.cmd = nil
			mp.out.WriteString(fmt.Sprintf(`{"cpu":%d,"error":%q}`, cpu, err.Error()))
		}
		m.procs = append(m.procs, mp)
	}
	return m
}

// stop ends every meter (closing its stdin) and collects what each saw.
func (m *hostMeter) stop() []HostStalls {
	if m == nil {
		return nil
	}
	var all []HostStalls
	for _, mp := range m.procs {
		if mp.cmd != nil {
			_ = mp.stdin.Close()
			done := make(chan error, 1)
			go func() { done <- mp.cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				_ = mp.cmd.Process.Kill()
				<-done
			}
		}
		var hs HostStalls
		if err := json.NewDecoder(bufio.NewReader(&mp.out)).Decode(&hs); err != nil {
			hs = HostStalls{CPU: mp.cpu, Error: fmt.Sprintf("host meter gave no result (%v): %s", err, firstLine(mp.errOut.String()))}
		}
		all = append(all, hs)
	}
	return all
}

// ServeHostMeter is the `isthmus bench host-meter --cpu N` subcommand's body:
// it measures until stdin reaches EOF (the bench closes it at the end of the
// run), then writes the result as one JSON object to out.
func ServeHostMeter(cpu int, stdin io.Reader, out io.Writer) error {
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(stop)
	}()
	hs, err := MeasureHost(cpu, stop)
	if err != nil {
		hs.Error = err.Error()
	}
	if encErr := json.NewEncoder(out).Encode(hs); encErr != nil {
		return encErr
	}
	return err
}
