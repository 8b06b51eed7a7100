package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"

	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
)

// The orchestrator talks to each endpoint process over its stdin and stdout,
// one JSON message per line; the endpoint's logs go to stderr. The SDP
// offer/answer travels this way too: the orchestrator plays the SIP proxy of
// RFC 6157 Figure 1, and sees every SDP it forwards.
//
//	offerer -> {"event":"offer","sdp":...}       -> orchestrator -> answerer
//	answerer -> {"event":"answer","sdp":...}     -> orchestrator -> offerer
//	both    -> {"event":"connected","path":...}  (media path is up, reader running)
//	orchestrator -> {"event":"start"} to both    (only once both are connected)
//	both    -> {"event":"result","stats":...}
//	orchestrator -> {"event":"exit"} to both     (only once both reported)

// Control events.
const (
	EventOffer     = "offer"
	EventAnswer    = "answer"
	EventConnected = "connected"
	EventStart     = "start"
	EventResult    = "result"
	EventExit      = "exit"
	EventError     = "error"
)

// Message is one line of the control protocol.
type Message struct {
	Event string `json:"event"`
	SDP   string `json:"sdp,omitempty"`
	Path  *Path  `json:"path,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
	Error string `json:"error,omitempty"`
}

// Candidate is one end of the selected media path as an endpoint sees it.
type Candidate struct {
	// Type is the ICE candidate type (host, srflx, prflx, relay) or
	// "plain" for an endpoint without ICE.
	Type string `json:"type"`
	// Addr is the transport address, "192.0.2.1:49152" or "[2001:db8::10]:5000".
	Addr string `json:"addr"`
	// Family is "IPv4" or "IPv6".
	Family string `json:"family"`
	// Related is the related address of a relay or srflx candidate: for a
	// local relayed candidate, where the relay sees this endpoint.
	Related string `json:"related,omitempty"`
}

// Path is the media path an endpoint uses.
type Path struct {
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
	// Server is the TURN server address the endpoint talks to when its
	// local candidate is relayed.
	Server string `json:"server,omitempty"`
	// ICE is false for the legacy endpoint and for an SDK agent whose peer
	// does not do ICE.
	ICE bool `json:"ice"`
}

// controlChannel is the endpoint's side: read orders from stdin, write
// events to stdout.
type controlChannel struct {
	in  *bufio.Scanner
	mu  sync.Mutex
	out *json.Encoder
}

func newControlChannel(stdin io.Reader, stdout io.Writer) *controlChannel {
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &controlChannel{in: sc, out: json.NewEncoder(stdout)}
}

func (c *controlChannel) send(m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.out.Encode(m); err != nil {
		return fmt.Errorf("demo: control: send %s: %w", m.Event, err)
	}
	return nil
}

// expect reads the next message and checks its event. stdin closing
// counts as "exit", so an orchestrator that dies takes its endpoints along.
func (c *controlChannel) expect(event string) (Message, error) {
	if !c.in.Scan() {
		if err := c.in.Err(); err != nil {
			return Message{}, fmt.Errorf("demo: control: waiting for %s: %w", event, err)
		}
		if event == EventExit {
			return Message{Event: EventExit}, nil
		}
		return Message{}, fmt.Errorf("demo: control: waiting for %s: %w", event, io.EOF)
	}
	var m Message
	if err := json.Unmarshal(c.in.Bytes(), &m); err != nil {
		return Message{}, fmt.Errorf("demo: control: waiting for %s: bad message %q: %w", event, c.in.Text(), err)
	}
	if m.Event != event {
		return Message{}, fmt.Errorf("demo: control: got %q, want %q", m.Event, event)
	}
	return m, nil
}

// ErrEndpoint wraps every failure an endpoint process reported or caused
// by dying.
var ErrEndpoint = errors.New("endpoint failed")

// endpointProc is the orchestrator's handle on one endpoint process.
type endpointProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	msgs   chan Message
	stderr *lockedbuf.Buffer
	// quit tells the stdout reader to drop messages nobody will read, so
	// it always reaches Wait.
	quit     chan struct{}
	quitOnce sync.Once
	exited   chan struct{}
	err      error // from Wait, valid after exited is closed
}

func startEndpoint(name string, cmd *exec.Cmd) (*endpointProc, error) {
	e := &endpointProc{name: name, cmd: cmd, msgs: make(chan Message, 8), stderr: &lockedbuf.Buffer{Max: 16 << 10}, quit: make(chan struct{}), exited: make(chan struct{})}
	var err error
	if e.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("demo: %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("demo: %s: %w", name, err)
	}
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: %s: start: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m Message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = Message{Event: EventError, Error: fmt.Sprintf("unreadable control line %q", sc.Text())}
			}
			select {
			case e.msgs <- m:
			case <-e.quit:
			}
		}
		close(e.msgs)
		e.err = cmd.Wait()
		close(e.exited)
	}()
	return e, nil
}

func (e *endpointProc) send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("demo: %s: send %s: %w", e.name, m.Event, err)
	}
	if _, err := e.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("demo: %s: send %s: %w", e.name, m.Event, err)
	}
	return nil
}

// expect waits for the endpoint's next message, which must be event.
func (e *endpointProc) expect(ctx context.Context, event string) (Message, error) {
	select {
	case m, ok := <-e.msgs:
		switch {
		case !ok:
			<-e.exited
			return Message{}, fmt.Errorf("demo: %s: %w: exited (%v) while waiting for %s; stderr:\n%s", e.name, ErrEndpoint, e.err, event, e.stderr.String())
		case m.Event == EventError:
			return Message{}, fmt.Errorf("demo: %s: %w: %s; stderr:\n%s", e.name, ErrEndpoint, m.Error, e.stderr.String())
		case m.Event != event:
			return Message{}, fmt.Errorf("demo: %s: %w: sent %q while %q was expected", e.name, ErrEndpoint, m.Event, event)
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, fmt.Errorf("demo: %s: waiting for %s: %w; stderr:\n%s", e.name, event, ctx.Err(), e.stderr.String())
	}
}

// finish tells the endpoint to exit and waits for it, killing it when ctx
// ends first.
func (e *endpointProc) finish(ctx context.Context) error {
	_ = e.send(Message{Event: EventExit})
	_ = e.stdin.Close()
	e.quitOnce.Do(func() { close(e.quit) })
	select {
	case <-e.exited:
	case <-ctx.Done():
		_ = e.cmd.Cancel()
		<-e.exited
		return fmt.Errorf("demo: %s: did not exit: %w", e.name, ctx.Err())
	}
	if e.err != nil {
		return fmt.Errorf("demo: %s: %w: exit: %v; stderr:\n%s", e.name, ErrEndpoint, e.err, e.stderr.String())
	}
	return nil
}

// kill ends the process at once; used on the error path.
func (e *endpointProc) kill() {
	_ = e.stdin.Close()
	e.quitOnce.Do(func() { close(e.quit) })
	select {
	case <-e.exited:
		return // already reaped: its pid may belong to someone else now
	default:
	}
	_ = e.cmd.Cancel()
	<-e.exited
}
