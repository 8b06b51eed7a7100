package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace this package creates; [Sweep]
// only ever touches names that carry it.
const Prefix = "isthmus-"

// ErrNotRoot is returned by [NewRun] when the process is not root: creating
// namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
var ErrNotRoot = errors.New("netns: network namespaces need root (run as root or with sudo)")

// ErrNoIproute2 is returned by [NewRun] when the `ip` command is missing.
var ErrNoIproute2 = errors.New("netns: the ip command (iproute2) is not installed")

// netnsRunDir is where iproute2 keeps one file per named namespace.
const netnsRunDir = "/run/netns"

// ipCommandTimeout bounds every single `ip` invocation, so a wedged kernel
// call cannot hang a test forever.
const ipCommandTimeout = 15 * time.Second

// Run is one set of namespaces created together. Close deletes them all;
// it is safe to call more than once and from a signal handler's goroutine.
type Run struct {
	// ID is "<pid>-<random>", the part of every namespace name that is
	// unique to this run.
	ID string

	ip string

	mu     sync.Mutex
	spaces []*Namespace
	closed bool
}

// Namespace is one network namespace of a [Run].
type Namespace struct {
	// Name is the full namespace name, as `ip netns list` shows it.
	Name string
	// Role is the short name the caller gave it ("relay", "ua6", ...).
	Role string

	ip string
}

// NewRun checks that namespaces can be made (root, iproute2 present) and
// returns an empty run with a fresh unique ID.
func NewRun() (*Run, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoIproute2, err)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("netns: random run id: %w", err)
	}
	return &Run{ID: strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]), ip: ip}, nil
}

// Namespace creates the namespace "isthmus-<run id>-<role>" with its
// loopback up. role must be short and made of [a-z0-9-].
func (r *Run) Namespace(ctx context.Context, role string) (*Namespace, error) {
	if role == "" || strings.Trim(role, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return nil, fmt.Errorf("netns: role %q: want a non-empty name of [a-z0-9-]", role)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("netns: namespace %q: run %s already closed", role, r.ID)
	}
	ns := &Namespace{Name: Prefix + r.ID + "-" + role, Role: role, ip: r.ip}
	// Registered before `ip netns add` runs, so Close removes it: an `ip`
	// killed by ctx (Ctrl-C during set-up) may already have made it.
	r.spaces = append(r.spaces, ns)
	if _, err := runIP(ctx, r.ip, "netns", "add", ns.Name); err != nil {
		return nil, err
	}
	if err := ns.IP(ctx, "link", "set", "dev", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

// Namespaces returns the namespaces created so far, in creation order.
func (r *Run) Namespaces() []*Namespace {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Namespace(nil), r.spaces...)
}

// Close kills every process still running inside the run's namespaces and
// deletes the namespaces (their veths and bridges go with them). It returns
// the first error but always tries every namespace.
func (r *Run) Close() error {
	r.mu.Lock()
	spaces := r.spaces
	r.spaces = nil
	r.closed = true
	r.mu.Unlock()

	var first error
	// Reverse order: the last created is the most likely to hold processes
	// started after the others were wired.
	for i := len(spaces) - 1; i >= 0; i-- {
		if err := spaces[i].delete(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// IP runs `ip -n <namespace> args...`.
func (ns *Namespace) IP(ctx context.Context, args ...string) error {
	_, err := runIP(ctx, ns.ip, append([]string{"-n", ns.Name}, args...)...)
	return err
}

// Output runs `ip -n <namespace> args...` and returns its standard output.
func (ns *Namespace) Output(ctx context.Context, args ...string) (string, error) {
	return runIP(ctx, ns.ip, append([]string{"-n", ns.Name}, args...)...)
}

// Command returns a command that runs name inside the namespace through
// `ip netns exec` (which execs name, so the process ID is name's own). The
// process gets its own process group; cancelling ctx kills that group.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, ns.ip, append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// Negative pid: the whole process group this command leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// PIDs lists the processes currently inside the namespace.
func (ns *Namespace) PIDs(ctx context.Context) ([]int, error) {
	out, err := runIP(ctx, ns.ip, "netns", "pids", ns.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("netns: %s: pids: bad pid %q", ns.Name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// delete kills what runs inside (only processes this run put there can be
// inside a namespace it created) and removes the namespace.
func (ns *Namespace) delete() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*ipCommandTimeout)
	defer cancel()
	return deleteNamespace(ctx, ns.ip, ns.Name)
}

func deleteNamespace(ctx context.Context, ip, name string) error {
	if _, err := os.Lstat(filepath.Join(netnsRunDir, name)); errors.Is(err, fs.ErrNotExist) {
		return nil // never made (its `ip netns add` failed or was killed first)
	}
	if out, err := runIP(ctx, ip, "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, err := runIP(ctx, ip, "netns", "del", name)
	return err
}

// runIP runs the ip command and returns stdout; the error names the command
// line and carries ip's own message.
func runIP(ctx context.Context, ip string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipCommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, ip, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
