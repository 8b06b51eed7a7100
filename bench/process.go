package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
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
	cmd     *exec.Cmd
	dir     string
	stderr  *tailBuffer
	done    chan struct{}
	waitErr error
}

// ErrRelayExited reports a relay process that exited before or while it
// was being measured.
var ErrRelayExited = errors.New("bench: relay process exited")

// tailBuffer keeps the last 8 KiB written to it (a relay's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-8<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// freePort finds a port free for UDP and TCP on both 127.0.0.1 and ::1.
func freePort() (int, error) {
	for range 50 {
		u4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("bench: pick port: %w", err)
		}
		port := u4.LocalAddr().(*net.UDPAddr).Port
		var closers []func() error
		ok := true
		for _, try := range []func() (func() error, error){
			func() (func() error, error) {
				c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: port})
				if err != nil {
					return nil, err
				}
				return c.Close, nil
			},
			func() (func() error, error) {
				c, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
				if err != nil {
					return nil, err
				}
				return c.Close, nil
			},
			func() (func() error, error) {
				c, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
				if err != nil {
					return nil, err
				}
				return c.Close, nil
			},
		} {
			cl, err := try()
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, cl)
		}
		for _, cl := range closers {
			_ = cl()
		}
		_ = u4.Close()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("bench: pick port: no port free on both loopback families")
}

// coturnConfig renders a turnserver config equivalent to our relay's flags.
// See docs/bench.md for the settings table.
func coturnConfig(spec RelaySpec, port int, dir string) string {
	lines := []string{
		"listening-port=" + strconv.Itoa(port),
		"listening-ip=127.0.0.1",
		"listening-ip=::1",
		"relay-ip=127.0.0.1",
		"relay-ip=::1",
		"min-port=" + strconv.Itoa(spec.MinPort),
		"max-port=" + strconv.Itoa(spec.MaxPort),
		"lt-cred-mech",
		"user=" + spec.Username + ":" + spec.Password,
		"realm=" + spec.Realm,
		"allow-loopback-peers",
		"no-multicast-peers",
		"no-tls",
		"no-dtls",
		"no-cli",
		"no-rfc5780",
		"total-quota=0",
		"user-quota=0",
		// One relay thread per CPU the relay may use: our relay runs
		// GOMAXPROCS (= CPUs in its affinity mask) forwarding goroutines.
		"relay-threads=" + strconv.Itoa(max(1, cpusFor(spec.CPU))),
		"userdb=" + filepath.Join(dir, "turndb"),
		"pidfile=" + filepath.Join(dir, "turnserver.pid"),
		// Logs go nowhere: a synchronous log write to a busy disk stalled
		// coturn for hundreds of milliseconds on a shared machine.
		"log-file=/dev/null",
		"simple-log",
		"no-stdout-log",
	}
	return strings.Join(lines, "\n") + "\n"
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
	p := &RelayProc{stderr: &tailBuffer{}, done: make(chan struct{})}
	switch spec.Kind {
	case KindIsthmus, KindCoturn:
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p.V4 = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
		p.V6 = netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port))
		if spec.Kind == KindIsthmus {
			argv = []string{spec.Binary, "relay",
				"--listen", p.V4.String(), "--listen", p.V6.String(),
				"--relay-ip", "127.0.0.1", "--relay-ip", "::1",
				"--realm", spec.Realm, "--user", spec.Username + ":" + spec.Password,
				"--allow-loopback-peers",
				"--min-port", strconv.Itoa(spec.MinPort), "--max-port", strconv.Itoa(spec.MaxPort),
				// Every call of the load is the one bench user (coturn's
				// config below sets user-quota=0 too).
				"--user-quota", "0",
				"--log-level", "warn"}
		} else {
			dir, err := os.MkdirTemp("", "isthmus-bench-coturn-")
			if err != nil {
				return nil, fmt.Errorf("bench: coturn config dir: %w", err)
			}
			p.dir = dir
			conf := filepath.Join(dir, "turnserver.conf")
			if err := os.WriteFile(conf, []byte(coturnConfig(spec, port, dir)), 0o600); err != nil {
				_ = os.RemoveAll(dir)
				return nil, fmt.Errorf("bench: write coturn config: %w", err)
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
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("bench: start %s: %w", spec.Name, err)
	}
	p.cmd = cmd
	p.PID = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
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
		return nil, fmt.Errorf("bench: %s not ready: %w; output: %s", spec.Name, err, p.stderr.String())
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

// waitSTUN sends STUN Binding requests to both listeners until each answers.
func waitSTUN(ctx context.Context, p *RelayProc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, ap := range []netip.AddrPort{p.V4, p.V6} {
		if !ap.IsValid() {
			continue
		}
		for {
			if err := probeSTUN(ap); err == nil {
				break
			} else if time.Now().After(deadline) {
				return fmt.Errorf("no STUN answer from %s within %v: %w", ap, limit, err)
			}
			if p.done != nil {
				select {
				case <-p.done:
					return fmt.Errorf("%w: %v", ErrRelayExited, p.waitErr)
				default:
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func probeSTUN(ap netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		// ECONNREFUSED comes back fast while the relay is starting;
		// space the retries out.
		time.Sleep(50 * time.Millisecond)
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(50 * time.Millisecond)
			}
			return err
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err == nil && res.TransactionID == req.TransactionID {
			return nil
		}
	}
}

// Exited reports whether a started relay process has exited.
func (p *RelayProc) Exited() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns the tail of the relay's stdout and stderr.
func (p *RelayProc) Output() string {
	if p.stderr == nil {
		return ""
	}
	return p.stderr.String()
}

// Stop ends a started relay: SIGTERM, then SIGKILL after 3 s. It does
// nothing to an external relay.
func (p *RelayProc) Stop() error {
	defer p.cleanup()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

func (p *RelayProc) cleanup() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
		p.dir = ""
	}
}
