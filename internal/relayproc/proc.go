// Package relayproc runs a TURN server (or any helper process a test or the
// bench needs, such as turnutils_peer) as a child process: it renders the
// settings of `isthmus relay` and coturn's turnserver from one description,
// starts the process with its output kept in a bounded tail, waits until it
// answers a STUN Binding request (RFC 8489 §3), and kills and reaps it
// exactly once. bench, internal/demo and the tests share it.
package relayproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
)

// DefaultTail is the output tail Start keeps when Options.Tail is 0.
const DefaultTail = 32 << 10

// ErrExited reports a process that exited while it was waited for.
var ErrExited = errors.New("relayproc: process exited")

// Options adjust Start.
type Options struct {
	// Tail is how many bytes of combined stdout and stderr are kept
	// (DefaultTail when 0).
	Tail int
	// OnLine, when set, sees every complete output line (without its
	// newline), from one goroutine at a time; e.g. to notice a readiness
	// log line.
	OnLine func(line []byte)
	// Dir is removed when the process is stopped (a scratch directory for
	// its config file and database).
	Dir string
}

// Proc is a started child process.
type Proc struct {
	cmd  *exec.Cmd
	out  *lockedbuf.Buffer
	dir  string
	done chan struct{}
	err  error
	stop sync.Once
}

// Start starts cmd with its stdout and stderr going to the kept tail. cmd
// must not have Stdout or Stderr set. A command without SysProcAttr gets its
// own process group, so Stop reaches the children it forks.
func Start(cmd *exec.Cmd, opt Options) (*Proc, error) {
	if opt.Tail == 0 {
		opt.Tail = DefaultTail
	}
	p := &Proc{cmd: cmd, out: &lockedbuf.Buffer{Max: opt.Tail}, dir: opt.Dir, done: make(chan struct{})}
	var w io.Writer = p.out
	if opt.OnLine != nil {
		w = &lineWriter{tail: p.out, onLine: opt.OnLine}
	}
	cmd.Stdout, cmd.Stderr = w, w
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		p.removeDir()
		return nil, fmt.Errorf("relayproc: start %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error (nil for status 0); valid once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// Output returns the kept tail of the process's stdout and stderr, without
// surrounding white space.
func (p *Proc) Output() string { return string(bytes.TrimSpace([]byte(p.out.String()))) }

// Stop ends the process and waits for it: SIGTERM to its process group,
// SIGKILL after grace (at once when grace is 0). A command with a Cancel
// function (netns.Namespace.Command) is killed through it. Calling Stop
// again, or after the process exited by itself, only waits; a reaped
// process is never signalled, since its pid may belong to another by then.
func (p *Proc) Stop(grace time.Duration) {
	p.stop.Do(func() {
		defer p.removeDir()
		if p.Exited() {
			return
		}
		if grace > 0 {
			_ = p.signal(syscall.SIGTERM)
			select {
			case <-p.done:
				return
			case <-time.After(grace):
			}
		}
		if p.cmd.Cancel != nil {
			_ = p.cmd.Cancel()
		} else {
			_ = p.signal(syscall.SIGKILL)
		}
		<-p.done
	})
	<-p.done
}

// signal sends sig to the process group the process leads, or to the
// process alone when it has none.
func (p *Proc) signal(sig syscall.Signal) error {
	if a := p.cmd.SysProcAttr; a != nil && a.Setpgid {
		return syscall.Kill(-p.cmd.Process.Pid, sig)
	}
	return p.cmd.Process.Signal(sig)
}

func (p *Proc) removeDir() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// lineWriter copies output to the tail and hands complete lines to onLine.
// exec.Cmd uses one goroutine per distinct writer; stdout and stderr share
// this one, so the mutex orders them.
type lineWriter struct {
	mu      sync.Mutex
	tail    *lockedbuf.Buffer
	onLine  func([]byte)
	partial []byte
}

// maxLine bounds the partial line kept while waiting for its newline.
const maxLine = 64 << 10

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.tail.Write(b)
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.onLine(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > maxLine {
		w.partial = w.partial[:0]
	}
	w.partial = append([]byte(nil), w.partial...)
	return len(b), nil
}
