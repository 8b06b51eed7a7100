//go:build e2e

package sipua

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isthmusrelay/isthmus/gather"
	"github.com/isthmusrelay/isthmus/internal/demo"
	"github.com/isthmusrelay/isthmus/internal/lockedbuf"
	"github.com/isthmusrelay/isthmus/internal/netns"
	"github.com/isthmusrelay/isthmus/internal/netns/netnstest"
	"github.com/isthmusrelay/isthmus/relay"
	"github.com/isthmusrelay/isthmus/sipaddr"
)

// The dual-stack proxy of RFC 6157 §3.1.1 proven with Kamailio, in the
// namespaces of internal/demo: ua6 (IPv6 only) — relay namespace (dual
// stack: Kamailio and our TURN relay) — ua4 (IPv4 only, sipp as UAS).
// Gathering must run in a process inside its namespace, so the test
// binary re-executes itself there with e2eRoleEnv set.

const (
	e2eRoleEnv  = "ISTHMUS_SIPUA_E2E_ROLE"
	e2eUAC4Env  = "ISTHMUS_SIPUA_E2E_UAC4" // uac role: the IPv4-only phone calls alice
	e2eEchoEnv  = "ISTHMUS_SIPUA_E2E_ECHO" // uas role: echo RTP instead of probing
	e2eTURNUser = "demo"
	e2eTURNPass = "e2e-turn-secret"
	e2eSIPPass  = "e2e-sip-secret"
	e2eRTPCount = 250
	sippMedia   = 6000
)

func TestMain(m *testing.M) {
	switch os.Getenv(e2eRoleEnv) {
	case "":
		os.Exit(m.Run())
	case "relay":
		os.Exit(roleRelay())
	case "uac":
		os.Exit(roleUAC())
	case "uas":
		os.Exit(roleUAS())
	case "cancel":
		os.Exit(roleCancel())
	default:
		fmt.Fprintln(os.Stderr, "unknown role", os.Getenv(e2eRoleEnv))
		os.Exit(2)
	}
}

// roleRelay runs our TURN relay on both proxy addresses until stdin closes.
func roleRelay() int {
	cfg := relay.DefaultConfig()
	cfg.Listen = []string{netip.AddrPortFrom(demo.RelayIPv4, 3478).String(), netip.AddrPortFrom(demo.RelayIPv6, 3478).String()}
	cfg.RelayIPs = []string{demo.RelayIPv4.String(), demo.RelayIPv6.String()}
	cfg.Realm = "isthmus.e2e"
	cfg.Users = []string{e2eTURNUser + ":" + e2eTURNPass}
	cfg.AllowPeers = []string{"192.0.2.0/24", "2001:db8::/32"}
	cfg.Metrics = ""
	cfg.LogLevel = "warn"
	srv, err := relay.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	fmt.Println("relay ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	return 0
}

// uacResult is what the uac role prints as JSON on stdout.
type uacResult struct {
	Registered string      `json:"registered"`
	Received   string      `json:"received"`
	Offer      string      `json:"offer"`
	Answer     string      `json:"answer"`
	Routes     []string    `json:"routes"`
	Path       string      `json:"path"`
	Mode       gather.Mode `json:"mode"`
	Sent       int         `json:"sent"`
	Echoed     int         `json:"echoed"`
	// ByeReceived: the call ended by the peer's BYE.
	ByeReceived bool   `json:"bye_received,omitempty"`
	Error       string `json:"error,omitempty"`
}

// roleUAC: the IPv6-only phone. It registers at the proxy, calls the
// IPv4-only UAS with an offer holding an IPv4 relayed candidate, sends
// RTP through our relay, counts sipp's echoes and hangs up.
func roleUAC() int {
	var res uacResult
	err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		// By default the IPv6-only phone alice calls sipp; with
		// e2eUAC4Env the IPv4-only phone bob calls alice.
		user, self, proxyAddr, to := "alice", demo.UA6Addr, demo.RelayIPv6, "sip:service@"+netip.AddrPortFrom(demo.UA4Addr, 5060).String()
		if os.Getenv(e2eUAC4Env) != "" {
			user, self, proxyAddr, to = "bob", demo.UA4Addr, demo.RelayIPv4, "sip:alice@"+demo.RelayIPv4.String()
		}
		proxy := "sip:" + netip.AddrPortFrom(proxyAddr, 5060).String()
		ua, err := New(Config{
			AOR:      "sip:" + user + "@" + sipaddr.HostFromAddr(proxyAddr).String(),
			Listen:   netip.AddrPortFrom(self, 5060),
			Proxy:    proxy,
			Password: e2eSIPPass,
			Logger:   log,
		})
		if err != nil {
			return err
		}
		defer ua.Close()
		reg, err := ua.Register(ctx)
		if err != nil {
			return err
		}
		res.Registered = reg.Server.String()
		res.Received = reg.Received.String()

		agent, err := gather.NewAgent(gather.Config{
			TURN:     []string{"turn:" + netip.AddrPortFrom(proxyAddr, 3478).String() + "?transport=udp"},
			Username: e2eTURNUser, Password: e2eTURNPass,
			Timeout: 5 * time.Second,
		})
		if err != nil {
			return err
		}
		call, err := ua.Dial(ctx, to, agent)
		if err != nil {
			agent.Close()
			return err
		}
		res.Offer = string(call.uac.InviteRequest.Body())
		res.Answer = string(call.RemoteSDP())
		res.Routes = call.RouteSet()
		sel := call.Media().Selected()
		res.Path, res.Mode = sel.String(), sel.Mode

		if res.Sent, res.Echoed, err = probeRTP(call.Media()); err != nil {
			return err
		}
		if os.Getenv(e2eUAC4Env) != "" {
			// The callee hangs up: its BYE must reach us through the proxy.
			select {
			case <-call.Done():
				res.ByeReceived = true
			case <-time.After(10 * time.Second):
				return errors.New("no BYE from the callee")
			}
		}
		return call.Hangup(ctx)
	}()
	if err != nil {
		res.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		return 1
	}
	return 0
}

// probeRTP sends e2eRTPCount packets of 20 ms PCMU, paced at 5 ms, and
// counts the distinct ones echoed back until 1 s after the last.
func probeRTP(m *gather.MediaConn) (sent, echoed int, err error) {
	seen := make([]bool, e2eRTPCount)
	var mu sync.Mutex
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 1500)
		for {
			_ = m.SetReadDeadline(time.Now().Add(time.Second))
			n, err := m.Read(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) == nil && int(p.SequenceNumber) < e2eRTPCount {
				mu.Lock()
				seen[p.SequenceNumber] = true
				mu.Unlock()
			}
		}
	}()
	payload := make([]byte, 160)
	for i := 0; i < e2eRTPCount; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 0x15e7}, Payload: payload}
		if err := m.WriteRTP(pkt); err != nil {
			return sent, 0, fmt.Errorf("WriteRTP: %w", err)
		}
		sent++
		time.Sleep(5 * time.Millisecond)
	}
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if s {
			echoed++
		}
	}
	return sent, echoed, nil
}

// roleUAS: the IPv6-only phone called from the IPv4 side. It registers,
// answers the first INVITE with an agent whose IPv4 relayed address serves
// the IPv4-only caller, probes RTP, and waits for the caller's BYE.
func roleUAS() int {
	var res uacResult
	err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		calls := make(chan *Call, 1)
		errs := make(chan error, 1)
		ua, err := New(Config{
			AOR:      "sip:alice@" + sipaddr.HostFromAddr(demo.RelayIPv6).String(),
			Listen:   netip.AddrPortFrom(demo.UA6Addr, 5060),
			Proxy:    "sip:" + netip.AddrPortFrom(demo.RelayIPv6, 5060).String(),
			Password: e2eSIPPass,
			Logger:   log,
			OnInvite: func(in *Incoming) {
				agent, err := gather.NewAgent(gather.Config{
					TURN:     []string{"turn:" + netip.AddrPortFrom(demo.RelayIPv6, 3478).String() + "?transport=udp"},
					Username: e2eTURNUser, Password: e2eTURNPass,
					Timeout: 5 * time.Second,
				})
				if err != nil {
					_ = in.Reject(500, "Server Internal Error")
					errs <- err
					return
				}
				_ = in.Ring()
				c, err := in.Answer(ctx, agent)
				if err != nil {
					agent.Close()
					errs <- err
					return
				}
				calls <- c
			},
		})
		if err != nil {
			return err
		}
		defer ua.Close()
		reg, err := ua.Register(ctx)
		if err != nil {
			return err
		}
		res.Registered = reg.Server.String()
		res.Received = reg.Received.String()
		var call *Call
		select {
		case call = <-calls:
		case err := <-errs:
			return err
		case <-ctx.Done():
			return fmt.Errorf("no call: %w", ctx.Err())
		}
		res.Offer = string(call.RemoteSDP())
		res.Answer = string(call.uas.InviteResponse.Body())
		res.Routes = call.RouteSet()
		sel := call.Media().Selected()
		res.Path, res.Mode = sel.String(), sel.Mode
		if os.Getenv(e2eEchoEnv) != "" {
			// Echo for 4 s (the caller's probe takes about 2.3 s), then
			// hang up: this side's BYE follows its route set, the IPv6
			// entry first. Sent counts the echoes.
			_ = call.Media().SetReadDeadline(time.Now().Add(4 * time.Second))
			buf := make([]byte, 1500)
			for {
				n, err := call.Media().Read(buf)
				if err != nil {
					break
				}
				if _, err := call.Media().Write(buf[:n]); err == nil {
					res.Sent++
				}
			}
			select {
			case <-call.Done():
				return errors.New("the caller hung up first")
			default:
			}
			return call.Hangup(ctx)
		}
		if res.Sent, res.Echoed, err = probeRTP(call.Media()); err != nil {
			return err
		}
		select {
		case <-call.Done():
		case <-ctx.Done():
			return fmt.Errorf("no BYE from the caller: %w", ctx.Err())
		}
		return call.Hangup(ctx) // closes the media and the agent; no BYE after the peer's
	}()
	if err != nil {
		res.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		return 1
	}
	return 0
}

// roleCancel: the IPv6-only phone calls the ringing UAS and gives up
// after 2 s; it prints how Dial ended and how long it took.
func roleCancel() int {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ua, err := New(Config{
		AOR:    "sip:alice@" + sipaddr.HostFromAddr(demo.RelayIPv6).String(),
		Listen: netip.AddrPortFrom(demo.UA6Addr, 5060),
		Proxy:  "sip:" + netip.AddrPortFrom(demo.RelayIPv6, 5060).String(),
		Logger: log,
	})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer ua.Close()
	agent, err := gather.NewAgent(gather.Config{Timeout: 2 * time.Second})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer agent.Close()
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	start := time.Now()
	_, err = ua.Dial(dctx, "sip:service@"+netip.AddrPortFrom(demo.UA4Addr, 5060).String(), agent)
	fmt.Printf("dial ended after %s: %v\n", time.Since(start).Round(100*time.Millisecond), err)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		return 1
	}
	return 0
}

// syncBuffer collects a process's output for the test to read.
type syncBuffer = lockedbuf.Buffer

// startProc starts cmd with its output in a buffer; at cleanup it is
// killed (its process group: netns.Command gives it one) and waited for.
func startProc(t *testing.T, name string, cmd *exec.Cmd) (*syncBuffer, *proc) {
	t.Helper()
	out := &syncBuffer{}
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			if cmd.Process != nil {
				_ = killGroup(cmd)
			}
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
				t.Errorf("%s did not exit after kill", name)
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(out.String(), 6000))
		}
	})
	return out, p
}

// proc is a started process; err is set when exited is closed.
type proc struct {
	exited chan struct{}
	err    error
}

// killGroup kills cmd's process group (netns.Command gives each command
// its own), so kamailio's children and sipp go too.
func killGroup(cmd *exec.Cmd) error {
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// waitSIP sends OPTIONS from ns to the proxy until it answers.
func waitSIP(t *testing.T, ns *netns.Namespace, from, proxy netip.AddrPort, timeout time.Duration) {
	t.Helper()
	c, err := ns.ListenUDP(from)
	if err != nil {
		t.Fatalf("waitSIP: %v", err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for i := 0; time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKwait%d\r\nMax-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=w%d\r\nTo: <sip:%s>\r\nCall-ID: wait-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			proxy, c.LocalAddr().String(), i, sipaddr.HostFromAddr(from.Addr()), i, proxy, i)
		if _, err := c.WriteToUDPAddrPort([]byte(msg), proxy); err != nil {
			t.Fatalf("waitSIP: send: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return
		}
	}
	t.Fatalf("proxy %s did not answer OPTIONS within %v", proxy, timeout)
}

// sippMessages splits sipp's -trace_msg file into the messages it
// received, each as its text.
func sippReceived(trace string) []string {
	var out []string
	for _, blk := range strings.Split(trace, "----------------------------------------------- ") {
		i := strings.Index(blk, "message received")
		if i < 0 {
			continue
		}
		// The message starts on the line after the header line.
		_, msg, ok := strings.Cut(blk[i:], "\n")
		if ok {
			out = append(out, strings.TrimLeft(strings.ReplaceAll(msg, "\r\n", "\n"), "\n"))
		}
	}
	return out
}

func headerValues(msg, name string) []string {
	var vals []string
	head, _, _ := strings.Cut(msg, "\n\n")
	sc := bufio.NewScanner(strings.NewReader(head))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			for _, p := range strings.Split(v, ",") {
				vals = append(vals, strings.TrimSpace(p))
			}
		}
	}
	return vals
}

// checkWireHosts reads, with sipaddr's RFC 5118 readers, the start line's
// URI and every Via, Contact, Record-Route and Route of the messages sipp
// received: an unbracketed or otherwise invalid IPv6 reference is an error.
func checkWireHosts(t *testing.T, msgs []string) {
	t.Helper()
	n := 0
	for _, m := range msgs {
		head, _, _ := strings.Cut(m, "\n\n")
		lines := strings.Split(head, "\n")
		if f := strings.Fields(lines[0]); len(f) == 3 && f[2] == "SIP/2.0" {
			if _, err := sipaddr.ParseURI(f[1]); err != nil {
				t.Errorf("start line %q: %v", lines[0], err)
			}
			n++
		}
		for _, l := range lines[1:] {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "via", "v":
				if _, err := sipaddr.ParseViaList(v); err != nil {
					t.Errorf("Via %q: %v", v, err)
				}
				n++
			case "contact", "m", "record-route", "route":
				elems, err := sipaddr.SplitList(v)
				if err != nil {
					t.Errorf("%s %q: %v", k, v, err)
					continue
				}
				for _, e := range elems {
					if _, err := sipaddr.ParseAddress(e); err != nil {
						t.Errorf("%s %q: %v", k, e, err)
					}
					n++
				}
			}
		}
	}
	t.Logf("sipaddr read %d start-line URIs, Via, Contact, Record-Route and Route values in %d messages: all valid", n, len(msgs))
}

func findMsg(msgs []string, method string) string {
	for _, m := range msgs {
		if strings.HasPrefix(m, method+" ") {
			return m
		}
	}
	return ""
}

// requireTools skips t without kamailio or sipp.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

// e2eEnv is the running dual-stack network: namespaces, our TURN relay
// and Kamailio in the dual-stack one.
type e2eEnv struct {
	ctx   context.Context
	topo  *demo.Topology
	dir   string
	self  string
	kout  *syncBuffer
	kproc *proc
}

// startDualStack builds the namespaces and starts the relay and Kamailio;
// skips when a tool, root or namespaces are missing.
func startDualStack(t *testing.T) *e2eEnv {
	t.Helper()
	requireTools(t)
	cfgPath, err := filepath.Abs("../deploy/kamailio/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	run := netnstest.NewRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	topo, err := demo.BuildTopology(ctx, run, demo.TopologyOptions{})
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	e := &e2eEnv{ctx: ctx, topo: topo, dir: t.TempDir()}
	if e.self, err = os.Executable(); err != nil {
		t.Fatal(err)
	}

	// Our TURN relay in the dual-stack namespace.
	rcmd := topo.Relay.Command(ctx, e.self, "-test.run=^$")
	rcmd.Env = append(os.Environ(), e2eRoleEnv+"=relay")
	rin, err := rcmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rin.Close() })
	rout, _ := startProc(t, "relay", rcmd)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(rout.String(), "relay ready") {
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready: %s", rout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Kamailio beside it.
	kcmd := topo.Relay.Command(ctx, "kamailio", "-f", cfgPath, "-DD", "-E", "-Y", e.dir, "-w", e.dir,
		"-A", `DEMO_PASS="`+e2eSIPPass+`"`)
	e.kout, e.kproc = startProc(t, "kamailio", kcmd)
	waitSIP(t, topo.UA4, netip.AddrPortFrom(demo.UA4Addr, 0), netip.AddrPortFrom(demo.RelayIPv4, 5060), 15*time.Second)
	waitSIP(t, topo.UA6, netip.AddrPortFrom(demo.UA6Addr, 0), netip.AddrPortFrom(demo.RelayIPv6, 5060), 5*time.Second)
	return e
}

// sipp starts sipp with scenario file name (testdata) in the IPv4-only
// namespace, tracing messages to the returned file.
func (e *e2eEnv) sipp(t *testing.T, name string, args ...string) (string, *syncBuffer, *proc) {
	t.Helper()
	trace := filepath.Join(e.dir, name+".msg")
	scenario, err := filepath.Abs(filepath.Join("../deploy/kamailio/sipp", name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"-sf", scenario, "-i", demo.UA4Addr.String(), "-p", "5060",
		"-mi", demo.UA4Addr.String(), "-mp", fmt.Sprint(sippMedia), "-rtp_echo",
		"-m", "1", "-timeout", "40s", "-nostdin", "-trace_msg", "-message_file", trace}, args...)
	out, p := startProc(t, "sipp", e.topo.UA4.Command(e.ctx, "sipp", all...))
	return trace, out, p
}

// phone runs the test binary as role in the IPv6-only namespace.
func (e *e2eEnv) phone(t *testing.T, role string, env ...string) (*bytes.Buffer, *syncBuffer, *proc) {
	t.Helper()
	return e.phoneIn(t, e.topo.UA6, role, env...)
}

// phoneIn runs the test binary as role in ns, with env added.
func (e *e2eEnv) phoneIn(t *testing.T, ns *netns.Namespace, role string, env ...string) (*bytes.Buffer, *syncBuffer, *proc) {
	t.Helper()
	var out bytes.Buffer
	cmd := ns.Command(e.ctx, e.self, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), e2eRoleEnv+"="+role), env...)
	cmd.Stdout = &out
	log, p := startProc(t, role+" in "+ns.Role, cmd)
	return &out, log, p
}

// TestKamailioDualStackCall: the IPv6-only sipua registers at Kamailio
// (digest), calls the IPv4-only sipp UAS through it, RTP flows through our
// relay's IPv4 allocation and is echoed by sipp, then BYE.
func TestKamailioDualStackCall(t *testing.T) {
	e := startDualStack(t)
	ctx, kout, kdone := e.ctx, e.kout, e.kproc

	// sipp as UAS on the IPv4-only host, echoing RTP.
	trace, sout, sdone := e.sipp(t, "uas-rr")
	time.Sleep(300 * time.Millisecond) // sipp binds before the INVITE can reach it

	// The IPv6-only phone.
	uout, ulog, udone := e.phone(t, "uac")
	res := callResult(t, ctx, "uac", uout, ulog, udone, trace)

	waitSipp(t, sdone, sout, "sipp UAS exited 0 (1 call successful)")

	t.Logf("registered at %s, received=%s", res.Registered, res.Received)
	t.Logf("uac route set: %v", res.Routes)
	t.Logf("media path: %s; RTP sent %d, echoed %d", res.Path, res.Sent, res.Echoed)

	// Signaling: the UAC's route set starts on its own family.
	if len(res.Routes) != 2 || !strings.Contains(res.Routes[0], "["+demo.RelayIPv6.String()+"]") || !strings.Contains(res.Routes[1], demo.RelayIPv4.String()) {
		t.Errorf("UAC route set %v: want [IPv6 proxy entry, IPv4 proxy entry]", res.Routes)
	}
	// Kamailio's two Record-Route headers as sipp (downstream, IPv4)
	// saw them: IPv4 on top (RFC 6157 §3.1.1).
	tr, err := os.ReadFile(trace)
	if err != nil {
		t.Fatalf("sipp trace: %v", err)
	}
	msgs := sippReceived(string(tr))
	inv := findMsg(msgs, "INVITE")
	if inv == "" {
		t.Fatalf("sipp received no INVITE:\n%q", tail(string(tr), 1500))
	}
	rr := headerValues(inv, "Record-Route")
	t.Logf("INVITE at sipp: Record-Route %v", rr)
	if len(rr) != 2 || !strings.Contains(rr[0], demo.RelayIPv4.String()) || !strings.Contains(rr[1], "["+demo.RelayIPv6.String()+"]") {
		t.Errorf("INVITE Record-Route %v: want two, the IPv4 entry first", rr)
	}
	if via := headerValues(inv, "Via"); len(via) != 2 || !strings.Contains(via[1], "["+demo.UA6Addr.String()+"]:5060") {
		t.Errorf("INVITE Via %v: want the proxy's and the phone's bracketed IPv6 sent-by", via)
	}
	if ct := headerValues(inv, "Contact"); len(ct) != 1 || !strings.Contains(ct[0], "["+demo.UA6Addr.String()+"]:5060") {
		t.Errorf("INVITE Contact %v: want the phone's bracketed IPv6 address", ct)
	}
	// The offer: both families among the candidates, the IPv4 relayed
	// one in c= for the IPv4-only callee (RFC 6157 §4.1).
	if !regexp.MustCompile(`(?m)^c=IN IP4 192\.0\.2\.1\s*$`).MatchString(inv) {
		t.Errorf("offer at sipp has no c=IN IP4 192.0.2.1:\n%s", inv)
	}
	if !regexp.MustCompile(`(?m)^a=candidate:.* 2001:db8::10 .* typ host`).MatchString(inv) ||
		!regexp.MustCompile(`(?m)^a=candidate:.* 192\.0\.2\.1 .* typ relay`).MatchString(inv) {
		t.Errorf("offer lacks an IPv6 host or an IPv4 relayed candidate:\n%s", inv)
	}
	// In-dialog requests: loose_route consumed both entries.
	for _, m := range []string{"ACK", "BYE"} {
		msg := findMsg(msgs, m)
		if msg == "" {
			t.Errorf("sipp received no %s", m)
			continue
		}
		if r := headerValues(msg, "Route"); len(r) != 0 {
			t.Errorf("%s at sipp still has Route %v", m, r)
		}
	}
	// No unbracketed IPv6 anywhere in the headers sipp got.
	checkWireHosts(t, msgs)
	bare := regexp.MustCompile(`(?i)sip:(\w+@)?2001:db8`)
	for _, m := range msgs {
		head, _, _ := strings.Cut(m, "\n\n")
		if bare.MatchString(head) {
			t.Errorf("unbracketed IPv6 in a SIP header:\n%s", head)
		}
	}

	// Media: through our relay's IPv4 allocation to sipp and back.
	if res.Mode != gather.ModeLegacyRelay || !strings.Contains(res.Path, "relay/IPv4") {
		t.Errorf("media path %q (mode %s): want legacy-relay from an IPv4 relayed address", res.Path, res.Mode)
	}
	if res.Sent != e2eRTPCount || res.Echoed*1000 < res.Sent*999 {
		t.Errorf("RTP: sent %d, echoed %d: want >= 99.9%%", res.Sent, res.Echoed)
	}

	// Kamailio's own account: the INVITE came in on IPv6 and left to the
	// IPv4 UAS; the BYE was routed by Route.
	klog := kout.String()
	for _, want := range []string{
		"isthmus: registered sip:alice@",
		"isthmus: relay INVITE from " + demo.UA6Addr.String() + " on " + demo.RelayIPv6.String() + " to sip:service@" + demo.UA4Addr.String(),
		"isthmus: reply 200 OK from " + demo.UA4Addr.String() + " on " + demo.RelayIPv4.String(),
		"isthmus: relay BYE from " + demo.UA6Addr.String() + " on " + demo.RelayIPv6.String(),
	} {
		if !strings.Contains(klog, want) {
			t.Errorf("kamailio log lacks %q", want)
		}
	}
	select {
	case <-kdone.exited:
		t.Errorf("kamailio exited during the test: %v", kdone.err)
	default:
	}
}

// TestKamailioCallToIPv6Phone is the reverse call: an IPv4-only sipp UAC
// calls alice, registered by the IPv6-only sipua; Kamailio finds her by
// lookup("location") and relays the INVITE over IPv6 with two
// Record-Route entries, the IPv6 one on top; the phone answers with its
// IPv4 relayed address for the IPv4-only caller (RFC 6157 §4.1 rule 2) and
// RTP flows both ways through our relay.
func TestKamailioCallToIPv6Phone(t *testing.T) {
	e := startDualStack(t)
	uout, ulog, udone := e.phone(t, "uas")
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(ulog.String(), "sipua: registered") {
		select {
		case <-udone.exited:
			t.Fatalf("phone exited before registering: %v\n%s", udone.err, ulog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone did not register:\n%s", ulog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// -d: the call lasts 4 s, long enough for the phone's RTP probe.
	trace, sout, sdone := e.sipp(t, "uac-rr", "-s", "alice", "-d", "4000",
		netip.AddrPortFrom(demo.RelayIPv4, 5060).String())

	res := callResult(t, e.ctx, "phone", uout, ulog, udone, trace)
	waitSipp(t, sdone, sout, "sipp UAC exited 0 (1 call successful)")
	t.Logf("phone route set (INVITE Record-Route as received): %v", res.Routes)
	t.Logf("media path: %s; RTP sent %d, echoed %d", res.Path, res.Sent, res.Echoed)

	if len(res.Routes) != 2 || !strings.Contains(res.Routes[0], "["+demo.RelayIPv6.String()+"]") || !strings.Contains(res.Routes[1], demo.RelayIPv4.String()) {
		t.Errorf("phone route set %v: want [IPv6 proxy entry, IPv4 proxy entry]", res.Routes)
	}
	if !regexp.MustCompile(`(?m)^c=IN IP4 192\.0\.2\.1\s*$`).MatchString(res.Answer) {
		t.Errorf("answer has no c=IN IP4 192.0.2.1 for the IPv4-only caller:\n%s", res.Answer)
	}
	tr, err := os.ReadFile(trace)
	if err != nil {
		t.Fatalf("sipp trace: %v", err)
	}
	msgs := sippReceived(string(tr))
	var ok200 string
	for _, m := range msgs {
		if strings.HasPrefix(m, "SIP/2.0 200 ") && strings.Contains(m, "INVITE") && strings.Contains(m, "application/sdp") {
			ok200 = m
		}
	}
	if ok200 == "" {
		t.Fatalf("sipp received no 200 to its INVITE:\n%s", tail(string(tr), 4000))
	}
	rr := headerValues(ok200, "Record-Route")
	t.Logf("200 OK at sipp: Record-Route %v", rr)
	if len(rr) != 2 || !strings.Contains(rr[0], "["+demo.RelayIPv6.String()+"]") || !strings.Contains(rr[1], demo.RelayIPv4.String()) {
		t.Errorf("200 OK Record-Route %v: want the phone's copy of the INVITE's, IPv6 entry first", rr)
	}
	if ct := headerValues(ok200, "Contact"); len(ct) != 1 || !strings.Contains(ct[0], "["+demo.UA6Addr.String()+"]:5060") {
		t.Errorf("200 OK Contact %v: want the phone's bracketed IPv6 address", ct)
	}
	checkWireHosts(t, msgs)
	bare := regexp.MustCompile(`(?i)sip:(\w+@)?2001:db8`)
	for _, m := range msgs {
		head, _, _ := strings.Cut(m, "\n\n")
		if bare.MatchString(head) {
			t.Errorf("unbracketed IPv6 in a SIP header:\n%s", head)
		}
	}
	if res.Mode != gather.ModeLegacyRelay || !strings.Contains(res.Path, "relay/IPv4") {
		t.Errorf("media path %q (mode %s): want legacy-relay from an IPv4 relayed address", res.Path, res.Mode)
	}
	if res.Sent != e2eRTPCount || res.Echoed*1000 < res.Sent*999 {
		t.Errorf("RTP: sent %d, echoed %d: want >= 99.9%%", res.Sent, res.Echoed)
	}
	klog := e.kout.String()
	for _, want := range []string{
		"isthmus: relay INVITE from " + demo.UA4Addr.String() + " on " + demo.RelayIPv4.String() + " to sip:alice@[" + demo.UA6Addr.String() + "]:5060",
		"isthmus: reply 200 OK from " + demo.UA6Addr.String() + " on " + demo.RelayIPv6.String(),
		"isthmus: relay BYE from " + demo.UA4Addr.String() + " on " + demo.RelayIPv4.String(),
	} {
		if !strings.Contains(klog, want) {
			t.Errorf("kamailio log lacks %q", want)
		}
	}
}

// buildIsthmus builds cmd/isthmus into dir: the CLI runs as a process in
// its namespace.
func buildIsthmus(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	bin := filepath.Join(dir, "isthmus")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/isthmusrelay/isthmus/cmd/isthmus").CombinedOutput(); err != nil {
		t.Fatalf("build isthmus: %v\n%s", err, out)
	}
	return bin
}

// TestPhoneCLIThroughKamailio: "isthmus phone call" in the IPv6-only
// namespace registers at Kamailio and calls the IPv4-only sipp UAS for
// 3 s of RTP through our relay; its report line is checked.
func TestPhoneCLIThroughKamailio(t *testing.T) {
	// Skip before the build when the namespaces cannot be made anyway.
	requireTools(t)
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	bin := buildIsthmus(t, t.TempDir())
	e := startDualStack(t)
	_, sout, sdone := e.sipp(t, "uas-rr")
	time.Sleep(300 * time.Millisecond)
	cmd := e.topo.UA6.Command(e.ctx, bin, "phone", "call", "sip:service@"+netip.AddrPortFrom(demo.UA4Addr, 5060).String(),
		"--aor", "sip:alice@"+sipaddr.HostFromAddr(demo.RelayIPv6).String(),
		"--listen", netip.AddrPortFrom(demo.UA6Addr, 5060).String(),
		"--proxy", "sip:"+netip.AddrPortFrom(demo.RelayIPv6, 5060).String(),
		"--sip-pass", e2eSIPPass,
		"--turn", "turn:"+netip.AddrPortFrom(demo.RelayIPv6, 3478).String()+"?transport=udp",
		"--user", e2eTURNUser, "--pass", e2eTURNPass,
		"--duration", "3s", "--sip-timeout", "15s")
	out, p := startProc(t, "isthmus phone call", cmd)
	select {
	case <-p.exited:
	case <-e.ctx.Done():
		t.Fatal("isthmus phone call did not finish")
	}
	if p.err != nil {
		t.Fatalf("isthmus phone call: %v\n%s", p.err, out.String())
	}
	t.Logf("isthmus phone call:\n%s", strings.TrimSpace(out.String()))
	waitSipp(t, sdone, sout, "")
	if !strings.Contains(out.String(), "registered: sip:alice@["+demo.UA6Addr.String()+"]:5060 at ["+demo.RelayIPv6.String()+"]:5060") {
		t.Errorf("no registration line")
	}
	if !strings.Contains(out.String(), "path: legacy-relay relay/IPv4 -> legacy/IPv4") {
		t.Errorf("media path is not legacy-relay from an IPv4 relayed address")
	}
	m := regexp.MustCompile(`rtp: sent (\d+) received (\d+) loss`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no rtp report line")
	}
	var sent, recv int
	fmt.Sscan(m[1], &sent)
	fmt.Sscan(m[2], &recv)
	if sent < 140 || recv*1000 < sent*999 {
		t.Errorf("RTP sent %d received %d: want ~150 sent and >= 99.9%% back", sent, recv)
	}
}

// TestKamailioCancel: the IPv6-only phone gives up on a silent IPv4-only
// UAS; its CANCEL must reach the proxy (the pre-loaded Route: with no route
// set from a 1xx, sipgo would send it to the Request-URI's IPv4 host) and
// Kamailio relays it to sipp, which answers 200 and 487.
func TestKamailioCancel(t *testing.T) {
	e := startDualStack(t)
	trace, sout, sdone := e.sipp(t, "uas-cancel")
	defer func() {
		tr, _ := os.ReadFile(trace)
		if i := strings.Index(string(tr), "SIP/2.0 487"); i >= 0 && t.Failed() {
			t.Logf("487 sent by sipp:\n%s", tail(string(tr[i:]), 800))
		}
	}()
	time.Sleep(300 * time.Millisecond)
	uout, ulog, udone := e.phone(t, "cancel")
	select {
	case <-udone.exited:
	case <-e.ctx.Done():
		t.Fatal("phone did not finish")
	}
	t.Logf("phone: %s", strings.TrimSpace(uout.String()))
	// The 487 ends the INVITE transaction at once; without it sipgo
	// waits 64*T1 (32 s) after the CANCEL's 200.
	var secs float64
	if _, err := fmt.Sscanf(uout.String(), "dial ended after %fs", &secs); err != nil || secs > 6 {
		t.Errorf("Dial did not end within 6 s of its 2 s deadline: %q", uout.String())
	}
	if udone.err != nil {
		t.Fatalf("phone: %v\n%s", udone.err, ulog.String())
	}
	waitSipp(t, sdone, sout, "sipp UAS exited 0 (INVITE, 100, CANCEL, 200, 487, ACK)")
	if want := "isthmus: relay CANCEL from " + demo.UA6Addr.String() + " on " + demo.RelayIPv6.String(); !strings.Contains(e.kout.String(), want) {
		t.Errorf("kamailio log lacks %q", want)
	}
}

// waitRegistered waits until a phone's log says it registered.
func waitRegistered(t *testing.T, log *syncBuffer, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(log.String(), "sipua: registered") {
		select {
		case <-p.exited:
			t.Fatalf("phone exited before registering: %v\n%s", p.err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("phone did not register:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKamailioSipuaBothSides: our sipua on both sides. The IPv4-only
// phone bob calls the IPv6-only phone alice through Kamailio; both gather
// with our relay (bob gets an IPv6 relayed address, alice an IPv4 one),
// ICE picks a pair, alice echoes bob's RTP, then hangs up: her BYE goes
// out by her route set (the proxy's IPv6 entry) and reaches bob over IPv4.
func TestKamailioSipuaBothSides(t *testing.T) {
	e := startDualStack(t)
	aout, alog, adone := e.phone(t, "uas", e2eEchoEnv+"=1")
	waitRegistered(t, alog, adone)
	bout, blog, bdone := e.phoneIn(t, e.topo.UA4, "uac", e2eUAC4Env+"=1")
	for _, p := range []struct {
		name string
		out  *bytes.Buffer
		log  *syncBuffer
		p    *proc
	}{{"bob (IPv4-only, calling)", bout, blog, bdone}, {"alice (IPv6-only, answering)", aout, alog, adone}} {
		select {
		case <-p.p.exited:
		case <-e.ctx.Done():
			t.Fatalf("%s did not finish", p.name)
		}
		if p.p.err != nil {
			t.Fatalf("%s: %v\n%s\n%s", p.name, p.p.err, p.out.String(), p.log.String())
		}
	}
	var bob, alice uacResult
	if err := json.Unmarshal(bout.Bytes(), &bob); err != nil {
		t.Fatalf("bob's output %q: %v", bout.String(), err)
	}
	if err := json.Unmarshal(aout.Bytes(), &alice); err != nil {
		t.Fatalf("alice's output %q: %v", aout.String(), err)
	}
	t.Logf("bob: route set %v, path %s, RTP sent %d echoed %d", bob.Routes, bob.Path, bob.Sent, bob.Echoed)
	t.Logf("alice: route set %v, path %s, echoed %d packets", alice.Routes, alice.Path, alice.Sent)
	if len(bob.Routes) != 2 || !strings.Contains(bob.Routes[0], demo.RelayIPv4.String()) {
		t.Errorf("bob's route set %v: want two entries, the IPv4 one first", bob.Routes)
	}
	if len(alice.Routes) != 2 || !strings.Contains(alice.Routes[0], "["+demo.RelayIPv6.String()+"]") {
		t.Errorf("alice's route set %v: want two entries, the IPv6 one first", alice.Routes)
	}
	for _, who := range []struct {
		name string
		sdp  string
	}{{"bob's offer", bob.Offer}, {"alice's answer", alice.Answer}} {
		if !regexp.MustCompile(`(?im)^a=candidate:\S+ \d+ udp \d+ [0-9a-f]*:[0-9a-f:]+ \d+ typ `).MatchString(who.sdp) ||
			!regexp.MustCompile(`(?im)^a=candidate:\S+ \d+ udp \d+ \d+\.\d+\.\d+\.\d+ \d+ typ `).MatchString(who.sdp) {
			t.Errorf("%s lacks candidates of both families:\n%s", who.name, who.sdp)
		}
	}
	if bob.Mode != gather.ModeICE || alice.Mode != gather.ModeICE {
		t.Errorf("modes bob %q alice %q: want ICE on both sides", bob.Mode, alice.Mode)
	}
	if !bob.ByeReceived {
		t.Errorf("bob did not receive alice's BYE")
	}
	if want := "isthmus: relay BYE from " + demo.UA6Addr.String() + " on " + demo.RelayIPv6.String() + " to sip:bob@" + demo.UA4Addr.String(); !strings.Contains(e.kout.String(), want) {
		t.Errorf("kamailio log lacks %q", want)
	}
	if bob.Sent != e2eRTPCount || bob.Echoed*1000 < bob.Sent*999 {
		t.Errorf("RTP: bob sent %d, got %d echoed: want >= 99.9%%", bob.Sent, bob.Echoed)
	}
}

// waitSipp waits up to 15 s for sipp to exit after a call and reports a
// non-zero exit with its output; ok, if set, is logged on success.
func waitSipp(t *testing.T, sipp *proc, out *syncBuffer, ok string) {
	t.Helper()
	select {
	case <-sipp.exited:
		if sipp.err != nil {
			t.Errorf("sipp exit: %v\n%s", sipp.err, out.String())
		} else if ok != "" {
			t.Logf("%s", ok)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("sipp did not exit after the call")
	}
}

// callResult waits for a phone process (who: its name in messages) and
// returns its JSON result, failing the test with sipp's trace when the call
// failed.
func callResult(t *testing.T, ctx context.Context, who string, out *bytes.Buffer, log *syncBuffer, p *proc, trace string) uacResult {
	t.Helper()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal(who + " did not finish")
	}
	var res uacResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%s output %q: %v (exit %v)\n%s", who, out.String(), err, p.err, log.String())
	}
	if p.err != nil || res.Error != "" {
		tr, _ := os.ReadFile(trace)
		t.Logf("sipp trace:\n%s", tail(string(tr), 5000))
		t.Fatalf("%s failed (exit %v): %s\n%s", who, p.err, res.Error, log.String())
	}
	return res
}
