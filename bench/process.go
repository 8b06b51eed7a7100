package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isthmusrelay/isthmus/internal/freeport"
	"github.com/isthmusrelay/isthmus/internal/relayproc"
)

// RelayKind says how a relay under test is started.
type RelayKind string

// Relay kinds.
const (
	// KindIsthmus starts `isthmus relay` from Binary.
	KindIsthmus RelayKind = "isthmus"
	// KindCoturn starts coturn's turnserver from Binary with a generated
	// config file of equivalent settings.
	KindCoturn RelayKind = "coturn"
	// KindCommand starts Command as given; Target says where it listens.
	KindCommand RelayKind = "command"
	// KindExternal starts nothing: the relay at Target is already running
	// (process figures need PID).
	KindExternal RelayKind = "external"
)

// RelaySpec describes one relay under test.
type RelaySpec struct {
	// Name labels the relay in reports ("isthmus", "coturn").
	Name string    `json:"name"`
	Kind RelayKind `json:"kind"`
	// Binary is the isthmus or turnserver executable.
	Binary string `json:"binary,omitempty"`
	// Command is argv for KindCommand.
	Command []string `json:"command,omitempty"`
	// Target4 and Target6 are the listening addresses of a KindCommand or
	// KindExternal relay.
	Target4 netip.AddrPort `json:"target4,omitempty"`
	Target6 netip.AddrPort `json:"target6,omitempty"`
	// PID of a KindExternal relay, 0 if unknown.
	PID int `json:"pid,omitempty"`
	// CPU pins the relay to this CPU (taskset -c); -1 leaves it unpinned.
	CPU int `json:"cpu"`
	// Realm, Username and Password are the long-term credentials the
	// started relay is configured with and the generator uses.
	Realm    string `json:"realm"`
	Username string `json:"username"`
	Password string `json:"-"`
	// MinPort and MaxPort bound the relayed ports of a started relay.
	MinPort int `json:"min_port"`
	MaxPort int `json:"max_port"`
	// ExtraArgs are appended to the started relay's command line.
	ExtraArgs []string `json:"extra_args,omitempty"`
}

// Defaults for the relays the harness starts. Relay ports lie below the
// kernel's ephemeral range (32768-60999) so they never collide with the
// generator's own sockets.
const (
	DefaultMinPort  = 20000
	DefaultMaxPort  = 29999
	DefaultRealm    = "bench.isthmus.test"
	DefaultUsername = "bench"
	DefaultPassword = "bench-secret"
)

// RelayProc is a running relay process (or an external relay).
type RelayProc struct {
	// PID is the relay's process id, 0 when unknown.
	PID int
	// V4 and V6 are its UDP listening addresses on loopback.
	V4, V6 netip.AddrPort
	// Pinning says how the relay was pinned, for the report.
	Pinning string
	proc    *relayproc.Proc
}

// ErrRelayExited reports a relay process that exited before or while it
// was being measured.
var ErrRelayExited = errors.New("bench: relay process exited")

// outputTail is how much of a relay's stdout and stderr is kept for errors.
const outputTail = 8 << 10

// relayConfig is the relay spec describes on both loopback families at
// port; coturn's rendering has the equivalent settings (docs/bench.md has
// the table).
func relayConfig(spec RelaySpec, port uint16) relayproc.Config {
	lo := []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	return relayproc.Config{
		ListenIPs: lo, Port: port, RelayIPs: lo,
		MinPort: spec.MinPort, MaxPort: spec.MaxPort,
		Realm: spec.Realm, Users: []string{spec.Username + ":" + spec.Password},
		AllowLoopbackPeers: true,
		LogLevel:           "warn",
		// Logs go nowhere: a synchronous log write to a busy disk stalled
		// coturn for hundreds of milliseconds on a shared machine.
		CoturnLog: "/dev/null",
		CoturnExtra: []string{
			"no-rfc5780",
			"total-quota=0",
			"user-quota=0",
			// One relay thread per CPU the relay may use: our relay runs
			// GOMAXPROCS (= CPUs in its affinity mask) forwarding goroutines.
			"relay-threads=" + strconv.Itoa(max(1, cpusFor(spec.CPU))),
			"no-stdout-log",
		},
	}
}

// coturnConfig renders a turnserver config equivalent to our relay's flags.
func coturnConfig(spec RelaySpec, port int, dir string) string {
	return relayConfig(spec, uint16(port)).CoturnConf(dir)
}

// cpusFor is the number of CPUs a relay pinned to cpu may use.
func cpusFor(cpu int) int {
	if cpu >= 0 {
		return 1
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 1
	}
	return set.Count()
}

// StartRelay starts the relay spec describes and waits until both of its
// loopback listeners answer a STUN Binding request.
func StartRelay(ctx context.Context, spec RelaySpec) (*RelayProc, error) {
	if spec.Kind == KindExternal {
		p := &RelayProc{PID: spec.PID, V4: spec.Target4, V6: spec.Target6, Pinning: "not started by bench"}
		if err := waitSTUN(ctx, p, 10*time.Second); err != nil {
			return nil, err
		}
		return p, nil
	}
	if spec.MinPort == 0 {
		spec.MinPort, spec.MaxPort = DefaultMinPort, DefaultMaxPort
	}
	var argv []string
	var dir string
	p := &RelayProc{}
	switch spec.Kind {
	case KindIsthmus, KindCoturn:
		port, err := freeport.DualStack()
		if err != nil {
			return nil, fmt.Errorf("bench: pick port: %w", err)
		}
		rc := relayConfig(spec, port)
		p.V4, p.V6 = rc.ListenAddrs()[0], rc.ListenAddrs()[1]
		if spec.Kind == KindIsthmus {
			// Every call of the load is the one bench user (coturn's config
			// sets user-quota=0 too).
			argv = append(append([]string{spec.Binary}, rc.IsthmusArgs()...), "--user-quota", "0")
		} else {
			if dir, err = os.MkdirTemp("", "isthmus-bench-coturn-"); err != nil {
				return nil, fmt.Errorf("bench: coturn config dir: %w", err)
			}
			conf, err := rc.WriteCoturnConf(dir)
			if err != nil {
				_ = os.RemoveAll(dir)
				return nil, fmt.Errorf("bench: %w", err)
			}
			argv = []string{spec.Binary, "-c", conf}
		}
	case KindCommand:
		if len(spec.Command) == 0 {
			return nil, errors.New("bench: relay: command: empty")
		}
		argv = append([]string(nil), spec.Command...)
		p.V4, p.V6 = spec.Target4, spec.Target6
	default:
		return nil, fmt.Errorf("bench: relay: kind %q unknown", spec.Kind)
	}
	argv = append(argv, spec.ExtraArgs...)
	p.Pinning = "unpinned"
	if spec.CPU >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", strconv.Itoa(spec.CPU)}, argv...)
			p.Pinning = "taskset -c " + strconv.Itoa(spec.CPU)
		}
	}
	proc, err := relayproc.Start(exec.Command(argv[0], argv[1:]...), relayproc.Options{Tail: outputTail, Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", spec.Name, err)
	}
	p.proc = proc
	p.PID = proc.PID()
	if spec.CPU >= 0 && p.Pinning == "unpinned" {
		// No taskset: pin every thread that exists now (threads created
		// later inherit the mask from their creator).
		if err := pinPID(p.PID, spec.CPU); err == nil {
			p.Pinning = "sched_setaffinity cpu " + strconv.Itoa(spec.CPU) + " after start (taskset missing)"
		} else {
			p.Pinning = "unpinned (taskset missing, sched_setaffinity: " + err.Error() + ")"
		}
	}
	if err := waitSTUN(ctx, p, 15*time.Second); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("bench: %s not ready: %w; output: %s", spec.Name, err, p.Output())
	}
	return p, nil
}

// pinPID pins every thread of pid to cpus.
func pinPID(pid int, cpus ...int) error {
	var set unix.CPUSet
	for _, cpu := range cpus {
		set.Set(cpu)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("task %d: %w", tid, err)
		}
	}
	return nil
}

// waitSTUN waits until both listeners answer a STUN Binding request.
func waitSTUN(ctx context.Context, p *RelayProc, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var done <-chan struct{}
	if p.proc != nil {
		done = p.proc.Done()
	}
	var servers []netip.AddrPort
	for _, ap := range []netip.AddrPort{p.V4, p.V6} {
		if ap.IsValid() {
			servers = append(servers, ap)
		}
	}
	err := relayproc.WaitBinding(ctx, servers, done, nil)
	if errors.Is(err, relayproc.ErrExited) {
		return fmt.Errorf("%w: %v", ErrRelayExited, p.proc.Err())
	}
	return err
}

// Exited reports whether a started relay process has exited.
func (p *RelayProc) Exited() bool {
	return p.proc != nil && p.proc.Exited()
}

// Output returns the tail of the relay's stdout and stderr.
func (p *RelayProc) Output() string {
	if p.proc == nil {
		return ""
	}
	return p.proc.Output()
}

// Stop ends a started relay: SIGTERM, then SIGKILL after 3 s. It does
// nothing to an external relay.
func (p *RelayProc) Stop() error {
	if p.proc != nil {
		p.proc.Stop(3 * time.Second)
	}
	return nil
}
